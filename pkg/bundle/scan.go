package bundle

import (
	"context"
	"io"
)

// Scan reads a bundle (.tar.gz) from r and validates it fully without
// writing anything: it makes every check [Unpack] makes and parses
// bundle.toml. On success it has read r to EOF, gzip trailer included, so that a caller
// hashing the stream (for example through an [io.TeeReader]) sees every
// byte; data after the gzip stream is an error. Scan does not hash file
// contents: the SHA256 fields of Info.Files are empty.
//
// An error from r itself is returned wrapped ("read bundle: ..."), not as
// [ErrNotBundle], so a failed upload can be told from a bad bundle.
func Scan(r io.Reader, lim Limits) (*Info, error) {
	return readBundle(context.Background(), r, lim, nil)
}
