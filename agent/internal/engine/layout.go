package engine

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/dropless/dropless/agent/internal/drift"
	"github.com/dropless/dropless/pkg/atomicfile"
	"github.com/dropless/dropless/pkg/bundle"
	"github.com/dropless/dropless/pkg/versions"
)

// Install layout:
//
//	<install_dir>/releases/<version>/          one kept release: the bundle's files/
//	<install_dir>/releases/.<version>.staging/  a bundle unpacked during preflight
//	<install_dir>/current                       -> releases/<version>, the running one
//
// current is a symlink (a directory junction on Windows) switched
// atomically: a new link current.tmp is renamed over it. Names starting
// with "." are never releases.
const (
	releasesDir = "releases"
	currentName = "current"
	currentTmp  = "current.tmp"
)

// releaseLink is what current holds for version v: relative to the
// install dir, slash-separated.
func releaseLink(v string) string { return releasesDir + "/" + v }

// linkVersion returns the version a current link names, or "" when it
// does not name a release.
func linkVersion(link string) string {
	dir, v := path.Split(filepath.ToSlash(link))
	if path.Clean(dir) != releasesDir || v == "" || strings.HasPrefix(v, ".") {
		return ""
	}
	return v
}

func stagingDir(installDir, v string) string {
	return filepath.Join(installDir, releasesDir, "."+v+".staging")
}

func releaseDir(installDir, v string) string {
	return filepath.Join(installDir, releasesDir, v)
}

// checkVersionName refuses versions that cannot be a directory name.
func checkVersionName(v string) error {
	if _, err := versions.Parse(v); err != nil {
		return err
	}
	if strings.ContainsAny(v, `/\:`) || strings.HasPrefix(v, ".") {
		return fmt.Errorf("version %q cannot name a release directory", v)
	}
	return nil
}

// verifyRelease checks that dir holds every entry of the bundle's files/
// as info lists it: regular files with their SHA-256, directories,
// symlinks with their targets. Extra files (logs the application wrote)
// are allowed.
func verifyRelease(dir string, info *bundle.Info) error {
	for _, f := range info.Files {
		rel, ok := strings.CutPrefix(f.Path, bundle.FilesDir+"/")
		if !ok {
			continue
		}
		p := filepath.Join(dir, filepath.FromSlash(rel))
		fi, err := os.Lstat(p)
		if err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		switch {
		case f.Mode.IsDir():
			if !fi.IsDir() {
				return fmt.Errorf("%s: not a directory", rel)
			}
		case f.Mode&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil || filepath.ToSlash(target) != f.LinkTarget {
				return fmt.Errorf("%s: not the symlink the bundle has", rel)
			}
		default:
			if !fi.Mode().IsRegular() {
				return fmt.Errorf("%s: not a regular file", rel)
			}
			sum, err := drift.HashFile(p)
			if err != nil {
				return err
			}
			if sum != f.SHA256 {
				return fmt.Errorf("%s: changed since it was installed (sha256 %s, the bundle has %s)", rel, sum, f.SHA256)
			}
		}
	}
	return nil
}

// syncTree fsyncs every regular file and directory under root, children
// before parents, so that after a power loss a renamed-in release is
// complete, not a tree of empty files. bundle.Unpack does not sync.
func syncTree(root string) error {
	var dirs []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			dirs = append(dirs, p)
		case d.Type().IsRegular():
			if err := atomicfile.SyncFile(p); err != nil {
				return fmt.Errorf("sync %s: %w", p, err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, d := range slices.Backward(dirs) {
		if err := atomicfile.SyncDir(d); err != nil {
			return err
		}
	}
	return nil
}

// prune removes release directories beyond keep, newest versions kept
// first, never one in protect (the running release and the rollback
// target). It logs what it removes and returns the first error.
func prune(installDir string, keep int, protect []string, log *slog.Logger) error {
	dir := filepath.Join(installDir, releasesDir)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("prune releases: %w", err)
	}
	kept := 0
	var others []string
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || strings.HasPrefix(name, ".") {
			continue
		}
		if slices.Contains(protect, name) {
			kept++
			continue
		}
		others = append(others, name)
	}
	versions.SortDescending(others)
	var first error
	for _, v := range others {
		if kept < keep {
			kept++
			continue
		}
		log.Info("removing old release", "version", v)
		if err := os.RemoveAll(filepath.Join(dir, v)); err != nil && first == nil {
			first = fmt.Errorf("prune release %s: %w", v, err)
		}
	}
	if err := atomicfile.SyncDir(dir); err != nil && first == nil {
		first = err
	}
	return first
}

// removeAll removes p and syncs its parent, so the removal is durable.
func removeAll(p string) error {
	if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err := os.RemoveAll(p); err != nil {
		return err
	}
	return atomicfile.SyncDir(filepath.Dir(p))
}

// readCurrent returns what <installDir>/current points at (see normLink),
// and whether it exists.
func readCurrent(installDir string) (string, bool, error) {
	p := filepath.Join(installDir, currentName)
	fi, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	if fi.Mode()&linkModes == 0 {
		return "", true, notALink(p)
	}
	t, err := os.Readlink(p)
	if err != nil {
		return "", true, err
	}
	return normLink(installDir, linkTarget(t)), true, nil
}

// normLink makes a link target read from current comparable: relative to
// installDir and slash-separated when it lies inside it (a junction holds
// an absolute path), else absolute and clean.
func normLink(installDir, target string) string {
	if filepath.IsAbs(target) {
		if rel, err := filepath.Rel(installDir, target); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			target = rel
		}
	}
	return filepath.ToSlash(filepath.Clean(target))
}

// notALink is the error for a current that the agent cannot switch.
func notALink(p string) error {
	return fmt.Errorf("%s is not a link (a directory from a manual install?): move it away so the agent can manage the releases", p)
}
