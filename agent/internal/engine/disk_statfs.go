//go:build linux || darwin || freebsd

package engine

import "syscall"

// freeSpace returns the bytes available to the agent on the file system
// holding dir, and whether it could tell.
func freeSpace(dir string) (uint64, bool, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, false, err
	}
	return uint64(st.Bavail) * uint64(st.Bsize), true, nil //nolint:unconvert // field types differ by OS
}
