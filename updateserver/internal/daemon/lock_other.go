//go:build (!unix && !windows) || aix || (solaris && !illumos)

package daemon

import "os"

// lockFile cannot lock on this OS: it only opens the file, and a second
// server on the same data dir is not refused.
func lockFile(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
}
