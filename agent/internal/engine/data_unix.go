//go:build unix

package engine

import (
	"errors"
	"io/fs"
	"os"
	"syscall"
)

// setOwner gives p (not following a symlink) fi's owner. An agent that is
// not root cannot, and keeps its own: the files are its own anyway.
func setOwner(p string, fi fs.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	err := os.Lchown(p, int(st.Uid), int(st.Gid))
	if errors.Is(err, fs.ErrPermission) && os.Geteuid() != 0 {
		return nil
	}
	return err
}
