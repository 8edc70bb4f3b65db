package config

import (
	"fmt"

	"github.com/dustin/go-humanize"
)

// DefaultBundleCacheSize is the disk the agent gives, in data_dir, to the
// bundles it keeps as bases for delta updates, when bundle_cache_size is
// not set.
const DefaultBundleCacheSize = 2 << 30

// Size is a byte count written as "2GiB" or "500MB" in TOML ("0" is zero).
type Size struct {
	Bytes int64
	Set   bool
}

// UnmarshalText parses a size.
func (s *Size) UnmarshalText(b []byte) error {
	v, err := humanize.ParseBytes(string(b))
	if err != nil || v > 1<<62 {
		return fmt.Errorf("%q is not a size (write it like 2GiB, 500MB or 0)", b)
	}
	s.Bytes, s.Set = int64(v), true
	return nil
}

// MarshalText writes the size in IEC units.
func (s Size) MarshalText() ([]byte, error) { return []byte(humanize.IBytes(uint64(s.Bytes))), nil }

// BundleCacheBytes is how much of data_dir the kept bundles may take:
// bundle_cache_size, or DefaultBundleCacheSize when unset; 0 turns delta
// updates off.
func (c *Config) BundleCacheBytes() int64 {
	if !c.BundleCacheSize.Set {
		return DefaultBundleCacheSize
	}
	return c.BundleCacheSize.Bytes
}
