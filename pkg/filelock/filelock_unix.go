//go:build unix && !aix && !(solaris && !illumos)

package filelock

import (
	"errors"
	"os"
	"syscall"
)

// tryLock opens (creating) path and takes an exclusive flock on it, without
// waiting. The lock is held until the returned file is closed.
func tryLock(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, ErrLocked
		}
		return nil, &os.PathError{Op: "flock", Path: path, Err: err}
	}
	return f, nil
}
