// Package filelock takes an exclusive, non-blocking lock on a file for as
// long as the process keeps it open: the agent's engine and the update
// server each hold one on their data dir, so that a second process on the
// same dir is refused. A crash releases the lock.
//
// Unix uses flock, Windows LockFileEx on one byte far past the content (so
// the file stays readable, e.g. for a pid written into it); on other
// systems Lock only opens the file and does not lock.
package filelock

import "errors"

// ErrLocked is returned by Lock while another process holds the lock.
var ErrLocked = errors.New("locked")
