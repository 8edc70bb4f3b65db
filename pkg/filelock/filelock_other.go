//go:build (!unix && !windows) || aix || (solaris && !illumos)

package filelock

import "os"

// tryLock cannot lock on this OS: it only opens (creating) path. Callers keep
// their other guards (the agent's journal still refuses a second
// unfinished job).
func tryLock(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
}
