//go:build !linux && !darwin && !freebsd && !windows

package engine

// freeSpace cannot tell on this OS: preflight skips the disk check (and
// says so in the log) rather than refusing every upgrade.
func freeSpace(dir string) (uint64, bool, error) { return 0, false, nil }

// sameFileSystem cannot tell on this OS: the disk check then adds up
// everything a job writes.
func sameFileSystem(a, b string) (same, known bool) { return false, false }
