//go:build (unix && !aix && !(solaris && !illumos)) || windows

package filelock_test

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/dropless/dropless/pkg/filelock"
)

// TestLock: while one holder keeps the file open a second Lock is refused
// with ErrLocked; closing the first releases it.
func TestLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.lock")
	first, err := filelock.Lock(path)
	if err != nil {
		t.Fatalf("first Lock: %v", err)
	}
	if f, err := filelock.Lock(path); !errors.Is(err, filelock.ErrLocked) {
		if f != nil {
			f.Close()
		}
		t.Fatalf("second Lock = %v, want ErrLocked", err)
	}
	first.Close()
	again, err := filelock.Lock(path)
	if err != nil {
		t.Fatalf("Lock after release: %v", err)
	}
	again.Close()
}
