//go:build (unix && !aix && !(solaris && !illumos)) || windows

package filelock_test

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/filelock"
)

// TestLock: while one holder keeps the file open a second Lock is refused
// with ErrLocked after the grace; closing the first releases it.
func TestLock(t *testing.T) {
	defer func(g time.Duration) { filelock.Grace = g }(filelock.Grace)
	filelock.Grace = 200 * time.Millisecond
	path := filepath.Join(t.TempDir(), "x.lock")
	first, err := filelock.Lock(path)
	if err != nil {
		t.Fatalf("first Lock: %v", err)
	}
	start := time.Now()
	if f, err := filelock.Lock(path); !errors.Is(err, filelock.ErrLocked) {
		if f != nil {
			f.Close()
		}
		t.Fatalf("second Lock = %v, want ErrLocked", err)
	}
	if waited := time.Since(start); waited < filelock.Grace {
		t.Errorf("refused after %v, before the grace of %v", waited, filelock.Grace)
	}
	first.Close()
	again, err := filelock.Lock(path)
	if err != nil {
		t.Fatalf("Lock after release: %v", err)
	}
	again.Close()
}

// A holder that lets go within the grace hands the lock to the waiting Lock.
func TestLockWaitsForARelease(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.lock")
	first, err := filelock.Lock(path)
	if err != nil {
		t.Fatal(err)
	}
	go func() { time.Sleep(100 * time.Millisecond); first.Close() }()
	second, err := filelock.Lock(path)
	if err != nil {
		t.Fatalf("Lock while the holder lets go: %v", err)
	}
	second.Close()
}
