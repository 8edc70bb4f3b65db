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

// sameFileSystem reports whether a and b are on one file system, and
// whether it could tell.
func sameFileSystem(a, b string) (same, known bool) {
	var sa, sb syscall.Stat_t
	if syscall.Stat(a, &sa) != nil || syscall.Stat(b, &sb) != nil {
		return false, false
	}
	return sa.Dev == sb.Dev, true
}
