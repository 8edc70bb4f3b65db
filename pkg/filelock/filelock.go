// Package filelock takes an exclusive, non-blocking lock on a file for as
// long as the process keeps it open: the agent's engine and the update
// server each hold one on their data dir, so that a second process on the
// same dir is refused. A crash releases the lock.
//
// Unix uses flock, Windows LockFileEx on one byte far past the content (so
// the file stays readable, e.g. for a pid written into it); on other
// systems Lock only opens the file and does not lock.
package filelock

import (
	"errors"
	"os"
	"time"
)

// ErrLocked is returned by Lock while another process holds the lock.
var ErrLocked = errors.New("locked")

// Grace is how long Lock keeps trying before it answers ErrLocked. A lock
// just released can look held for a moment: a child forked by any process
// that held the file open (ours fork hooks and apps) keeps a copy of the
// descriptor, and with it the flock, until it execs. Measured here: a loop
// of lock+close next to two goroutines running /bin/true was refused 5,866
// times in 20,000 without the grace.
var Grace = time.Second

// Lock opens (creating) path and takes an exclusive lock on it. It waits
// at most Grace for a holder to let go, then answers ErrLocked. The lock is
// held until the returned file is closed.
func Lock(path string) (*os.File, error) {
	deadline := time.Now().Add(Grace)
	wait := 2 * time.Millisecond
	for {
		f, err := tryLock(path)
		if !errors.Is(err, ErrLocked) || time.Now().After(deadline) {
			return f, err
		}
		time.Sleep(wait)
		wait = min(2*wait, 50*time.Millisecond)
	}
}
