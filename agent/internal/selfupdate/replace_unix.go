//go:build !windows

package selfupdate

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/minio/selfupdate"
)

// replace writes the binary from r (checked against sum by minio's
// PrepareAndCheckBinary) beside exe, syncs it and renames it over exe in
// one step. minio's CommitBinary renames exe away first and the new file
// in after: between the two the path has no binary, and a kill there
// would leave no agent to start; one rename over it never does.
func replace(exe string, r io.Reader, sum []byte, mode os.FileMode) error {
	opts := selfupdate.Options{TargetPath: exe, TargetMode: mode, Checksum: sum}
	if err := selfupdate.PrepareAndCheckBinary(r, opts); err != nil {
		return err
	}
	newPath := filepath.Join(filepath.Dir(exe), "."+filepath.Base(exe)+".new")
	f, err := os.Open(newPath)
	if err != nil {
		return err
	}
	err = f.Sync()
	f.Close()
	if err != nil {
		return err
	}
	if err := os.Rename(newPath, exe); err != nil {
		os.Remove(newPath)
		return fmt.Errorf("rename %s over %s: %w", newPath, exe, err)
	}
	d, err := os.Open(filepath.Dir(exe))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
