package fetch

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"io/fs"
	"os"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Verify checks that the file at path is target t: nil when it has t's
// trusted length and every sha256/sha512 hash t lists, else an *Error:
// ErrNotFound when there is no such file, ErrLengthMismatch or
// ErrHashMismatch when it holds something else, ErrLocal when it cannot be
// read. It makes no request and changes nothing. It is the check Download
// makes of an existing dst, for a caller that keeps verified targets where
// Download does not write them (tuf-client's --target-dir).
func (c *Client) Verify(ctx context.Context, t *Target, path string) error {
	if t == nil {
		return &Error{Kind: ErrConfig, Msg: "Verify needs a target"}
	}
	want, err := wantHashes(t)
	if err != nil {
		return err
	}
	d := &download{c: c, t: t, want: want, dst: path, hashes: map[string]hash.Hash{}}
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return d.fail(ErrNotFound, path+" does not exist", err)
	}
	if err != nil {
		return d.fail(ErrLocal, err.Error(), err)
	}
	if !fi.Mode().IsRegular() {
		return d.fail(ErrLocal, path+" is not a regular file", nil)
	}
	if fi.Size() != t.Length {
		msg := fmt.Sprintf("%s is %d bytes, not the trusted length %d", path, fi.Size(), t.Length)
		return d.fail(ErrLengthMismatch, msg, &metadata.ErrLengthOrHashMismatch{Msg: msg})
	}
	f, err := os.Open(path)
	if err != nil {
		return d.fail(ErrLocal, err.Error(), err)
	}
	defer f.Close()
	d.resetHashes()
	if _, err := d.hashFrom(ctx, f); err != nil {
		if ctx.Err() != nil {
			return d.canceled(ctx)
		}
		return d.fail(ErrLocal, err.Error(), err)
	}
	if msg := d.mismatch(); msg != "" {
		return d.fail(ErrHashMismatch, msg, &metadata.ErrLengthOrHashMismatch{Msg: msg})
	}
	return nil
}
