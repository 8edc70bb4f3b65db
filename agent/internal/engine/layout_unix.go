//go:build !windows

package engine

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/dropless/dropless/pkg/atomicfile"
)

// linkModes are the file modes current may have: a symlink.
const linkModes = fs.ModeSymlink

// linkTarget is the target as os.Readlink reports it.
func linkTarget(t string) string { return t }

// switchCurrent points current at link (relative to installDir, or
// absolute) atomically: a new symlink current.tmp is renamed over current,
// which rename(2) does in one step, then the install dir is fsynced so the
// switch survives a power loss. At any moment current is the old link or
// the new one.
func switchCurrent(installDir, link string) error {
	tmp := filepath.Join(installDir, currentTmp)
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("switch current: %w", err)
	}
	if err := os.Symlink(filepath.FromSlash(link), tmp); err != nil {
		return fmt.Errorf("switch current: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(installDir, currentName)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("switch current: %w", err)
	}
	// Sync the directory: the rename is durable once this returns.
	return atomicfile.SyncDir(installDir)
}

// removeCurrent removes current (nothing installed any more) durably.
func removeCurrent(installDir string) error {
	p := filepath.Join(installDir, currentName)
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove current: %w", err)
	}
	return atomicfile.SyncDir(installDir)
}

// repairCurrent cleans up after a switch that was interrupted: on unix a
// left-over current.tmp is only litter, current itself is always whole.
func repairCurrent(installDir string) error {
	err := os.Remove(filepath.Join(installDir, currentTmp))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
