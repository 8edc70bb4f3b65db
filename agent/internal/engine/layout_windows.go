//go:build windows

package engine

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// On Windows current is a directory junction: it needs no privilege (a
// symlink does) and works for every program. A junction cannot be renamed
// over an existing one, so the switch is: create current.tmp, remove
// current, rename current.tmp to current. A crash between the last two
// steps leaves no current but a current.tmp; repairCurrent finishes the
// switch on start, before recovery decides what to run. NTFS journals
// these metadata changes itself; there is no directory fsync on Windows.

// linkModes are the file modes current may have: Go reports junctions as
// irregular (or, before Go 1.23, as symlinks).
const linkModes = fs.ModeSymlink | fs.ModeIrregular

// linkTarget strips the NT namespace prefix os.Readlink leaves on a
// junction's target.
func linkTarget(t string) string { return strings.TrimPrefix(t, `\??\`) }

// switchCurrent points current at link (relative to installDir, or
// absolute) as a junction; see above for why it takes three steps.
func switchCurrent(installDir, link string) error {
	target := filepath.FromSlash(link)
	if !filepath.IsAbs(target) {
		target = filepath.Join(installDir, target)
	}
	tmp := filepath.Join(installDir, currentTmp)
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("switch current: %w", err)
	}
	if out, err := exec.Command("cmd", "/c", "mklink", "/J", tmp, target).CombinedOutput(); err != nil {
		return fmt.Errorf("switch current: mklink /J: %v: %s", err, strings.TrimSpace(string(out)))
	}
	cur := filepath.Join(installDir, currentName)
	if err := os.Remove(cur); err != nil && !errors.Is(err, fs.ErrNotExist) {
		os.Remove(tmp)
		return fmt.Errorf("switch current: %w", err)
	}
	if err := os.Rename(tmp, cur); err != nil {
		return fmt.Errorf("switch current: %w", err)
	}
	return nil
}

// removeCurrent removes the junction (not what it points at).
func removeCurrent(installDir string) error {
	if err := os.Remove(filepath.Join(installDir, currentName)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove current: %w", err)
	}
	return nil
}

// repairCurrent finishes a switch interrupted between removing current and
// renaming current.tmp, and removes a stale current.tmp otherwise.
func repairCurrent(installDir string) error {
	tmp := filepath.Join(installDir, currentTmp)
	if _, err := os.Lstat(tmp); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if _, ok, _ := readCurrent(installDir); !ok {
		return os.Rename(tmp, filepath.Join(installDir, currentName))
	}
	return os.Remove(tmp)
}
