//go:build (!unix && !windows) || aix || (solaris && !illumos)

package engine

import "os"

// lockDataDir cannot lock on this OS: it only creates the file. The
// journal still refuses a second unfinished job.
func lockDataDir(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
}
