package bundle

// Limits bound what [Scan] and [Unpack] accept, so that a hostile or broken
// bundle cannot exhaust memory or disk. A zero or negative field means the
// value from [DefaultLimits].
type Limits struct {
	// MaxEntries is the largest number of tar entries (of any kind).
	MaxEntries int
	// MaxEntrySize is the largest uncompressed size of one entry, in bytes.
	MaxEntrySize int64
	// MaxTotalSize is the largest sum of the uncompressed sizes of all
	// entries, in bytes.
	MaxTotalSize int64
}

// DefaultLimits returns the limits used for zero fields of a [Limits]:
// 200,000 entries, 8 GiB per entry and 32 GiB in total.
func DefaultLimits() Limits {
	return Limits{
		MaxEntries:   200_000,
		MaxEntrySize: 8 << 30,
		MaxTotalSize: 32 << 30,
	}
}

// withDefaults returns lim with zero or negative fields set from DefaultLimits.
func (lim Limits) withDefaults() Limits {
	def := DefaultLimits()
	if lim.MaxEntries <= 0 {
		lim.MaxEntries = def.MaxEntries
	}
	if lim.MaxEntrySize <= 0 {
		lim.MaxEntrySize = def.MaxEntrySize
	}
	if lim.MaxTotalSize <= 0 {
		lim.MaxTotalSize = def.MaxTotalSize
	}
	return lim
}
