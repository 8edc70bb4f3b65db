package bundle

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error returned by [Scan], [Unpack] and [Pack] for a
// bad bundle matches one of them with [errors.Is]; most are wrapped in an
// [*EntryError] that names the offending entry.
var (
	// ErrNotBundle means the input is not a gzip'd tar, or is corrupt or
	// truncated.
	ErrNotBundle = errors.New("not a bundle: expected a gzip'd tar (.tar.gz)")

	// ErrBadLayout means the archive is readable but its entries do not form
	// a bundle: an unknown top-level entry, a missing files/ directory, a
	// badly named migration or hook.
	ErrBadLayout = errors.New("not a valid bundle layout")

	// ErrUnsafePath means an entry could write or point outside the bundle:
	// an absolute or ".." path, a symlink or hard link that escapes, an entry
	// placed under a symlink, a duplicate entry.
	ErrUnsafePath = errors.New("unsafe path in bundle")

	// ErrUnsupportedType means an entry is a device, FIFO, socket or another
	// kind of file a bundle cannot hold.
	ErrUnsupportedType = errors.New("unsupported entry type in bundle")

	// ErrTooLarge means an entry, the total size or the number of entries is
	// over the [Limits].
	ErrTooLarge = errors.New("bundle too large")

	// ErrBadManifest means bundle.toml is not valid.
	ErrBadManifest = errors.New("invalid bundle manifest")

	// ErrDestNotEmpty means the destination given to [Unpack] already holds
	// files.
	ErrDestNotEmpty = errors.New("destination is not empty")
)

// EntryError describes a problem with one entry of a bundle.
type EntryError struct {
	// Entry is the entry's path inside the bundle, e.g. "files/bin/app".
	Entry string
	// Reason says what is wrong, e.g. "path escapes the bundle".
	Reason string
	// Err is a sentinel such as [ErrUnsafePath], or the underlying error
	// (for example a file system error while extracting).
	Err error
}

// Error returns `bundle entry "<entry>": <reason>`.
func (e *EntryError) Error() string {
	reason := e.Reason
	if reason == "" && e.Err != nil {
		reason = e.Err.Error()
	}
	return fmt.Sprintf("bundle entry %q: %s", e.Entry, reason)
}

// Unwrap returns the sentinel or underlying error.
func (e *EntryError) Unwrap() error { return e.Err }

func entryErr(entry string, sentinel error, format string, args ...any) error {
	return &EntryError{Entry: entry, Reason: fmt.Sprintf(format, args...), Err: sentinel}
}

// wrapped is an error with its own message that matches several errors
// (a sentinel and a cause) with errors.Is and errors.As.
type wrapped struct {
	msg  string
	errs []error
}

func (e *wrapped) Error() string   { return e.msg }
func (e *wrapped) Unwrap() []error { return e.errs }

// newErr returns an error whose message is msg and that wraps errs.
func newErr(msg string, errs ...error) error {
	var keep []error
	for _, err := range errs {
		if err != nil {
			keep = append(keep, err)
		}
	}
	return &wrapped{msg: msg, errs: keep}
}
