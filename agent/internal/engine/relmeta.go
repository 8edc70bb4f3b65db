package engine

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/dropless/dropless/agent/internal/drift"
	"github.com/dropless/dropless/pkg/atomicfile"
	"github.com/dropless/dropless/pkg/bundle"
)

// What the agent keeps of each release's bundle, besides its files, lives
// in the data dir:
//
//	<data_dir>/releases/<version>/release.json   the bundle's truth: every entry of files/
//	                                              (path, size, mode, sha256, link target)
//	                                              and the manifest
//	<data_dir>/releases/<version>/migrations/    the bundle's migrations/
//	<data_dir>/releases/<version>/hooks/         the bundle's hooks/
//	<data_dir>/releases/.<version>.tmp/          the same, being written (preflight)
//
// It is written in preflight from the verified bundle, while the old
// release still runs: a job's hooks run from there and its migrations are
// loaded from there, and for the running release it is what drift is
// measured against (CheckDrift). A release is immutable, so the record of
// a version never changes; it is removed with the release directory by
// prune. The install dir's releases/<version>/ holds exactly the bundle's
// files/ and nothing else of the bundle.
const (
	metaDir         = "releases"
	metaFileName    = "release.json"
	metaFormat      = 1
	metaMigrations  = bundle.MigrationsDir
	metaHooks       = bundle.HooksDir
	metaTmpSuffix   = ".tmp"
	metaMaxFileSize = 64 << 20 // release.json of a bundle with very many files
)

// releaseMeta is release.json.
type releaseMeta struct {
	Format  int    `json:"format"`
	Version string `json:"version"`
	// BundleSHA256 is the sha256 of the bundle it was made from.
	BundleSHA256 string `json:"bundle_sha256"`
	// Manifest is the bundle's bundle.toml, nil when it has none.
	Manifest *bundle.Manifest `json:"manifest,omitempty"`
	// Files lists every entry of the bundle's files/, paths relative to
	// the release directory (slash-separated), sorted by path.
	Files []drift.File `json:"files"`
	// Migrations and Hooks list the bundle's migration files and hooks.
	Migrations []string `json:"migrations,omitempty"`
	Hooks      []string `json:"hooks,omitempty"`
}

// manifest returns the release's manifest, a zero one when it has none.
func (m *releaseMeta) manifest() bundle.Manifest {
	if m == nil || m.Manifest == nil {
		return bundle.Manifest{}
	}
	return *m.Manifest
}

func (m *releaseMeta) hasHook(name string) bool {
	if m == nil {
		return false
	}
	for _, h := range m.Hooks {
		if h == name {
			return true
		}
	}
	return false
}

func metaRoot(dataDir string) string    { return filepath.Join(dataDir, metaDir) }
func metaPath(dataDir, v string) string { return filepath.Join(dataDir, metaDir, v) }
func metaTmpPath(dataDir, v string) string {
	return filepath.Join(dataDir, metaDir, "."+v+metaTmpSuffix)
}
func metaMigrationsDir(dataDir, v string) string {
	return filepath.Join(metaPath(dataDir, v), metaMigrations)
}
func metaHookPath(dataDir, v, hook string) string {
	return filepath.Join(metaPath(dataDir, v), metaHooks, hook)
}

// newReleaseMeta describes the bundle unpacked with info.
func newReleaseMeta(version, bundleSHA256 string, info *bundle.Info) *releaseMeta {
	m := &releaseMeta{Format: metaFormat, Version: version, BundleSHA256: bundleSHA256, Manifest: info.Manifest, Hooks: info.Hooks}
	for _, f := range info.Files {
		rel, ok := strings.CutPrefix(f.Path, bundle.FilesDir+"/")
		if !ok {
			if name, ok := strings.CutPrefix(f.Path, bundle.MigrationsDir+"/"); ok {
				m.Migrations = append(m.Migrations, name)
			}
			continue
		}
		m.Files = append(m.Files, drift.File{Path: rel, Size: f.Size, Mode: f.Mode, SHA256: f.SHA256, Link: f.LinkTarget})
	}
	return m
}

// writeReleaseMeta records m, with the migrations and hooks of the bundle
// unpacked in unpacked, as <data_dir>/releases/<version>: written into a
// temporary directory, synced, then renamed into place. An existing
// record of the same version with the same release.json is kept (a
// release never changes); one that differs is replaced.
func writeReleaseMeta(dataDir string, m *releaseMeta, unpacked string) error {
	data, err := json.MarshalIndent(m, "", " ")
	if err != nil {
		return err
	}
	final := metaPath(dataDir, m.Version)
	if old, err := os.ReadFile(filepath.Join(final, metaFileName)); err == nil && bytes.Equal(old, data) {
		return nil
	}
	tmp := metaTmpPath(dataDir, m.Version)
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return err
	}
	for _, sub := range []string{bundle.MigrationsDir, bundle.HooksDir} {
		if err := copyFlatDir(filepath.Join(unpacked, sub), filepath.Join(tmp, sub)); err != nil {
			return fmt.Errorf("keep the bundle's %s/: %w", sub, err)
		}
	}
	if err := os.WriteFile(filepath.Join(tmp, metaFileName), data, 0o600); err != nil {
		return err
	}
	if err := syncTree(tmp); err != nil {
		return err
	}
	if err := os.RemoveAll(final); err != nil {
		return err
	}
	return atomicfile.Rename(tmp, final)
}

// copyFlatDir copies the regular files of src (a bundle's migrations/ or
// hooks/, which hold nothing else) into dst, keeping the executable bit.
// A src that does not exist gives no dst.
func copyFlatDir(src, dst string) error {
	entries, err := os.ReadDir(src)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return err
	}
	for _, e := range entries {
		fi, err := os.Stat(filepath.Join(src, e.Name()))
		if err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("%s: not a regular file", e.Name())
		}
		if err := copyFile(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name()), fi.Mode().Perm()); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(src, dst string, perm fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Chmod(perm); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// errNoMeta means the agent has no record of a release's bundle: it was
// installed by an agent that kept none, or by hand.
var errNoMeta = errors.New("no record of the release's bundle")

// loadReleaseMeta reads the record of version v.
func loadReleaseMeta(dataDir, v string) (*releaseMeta, error) {
	p := filepath.Join(metaPath(dataDir, v), metaFileName)
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("release %s: %w", v, errNoMeta)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, metaMaxFileSize))
	if err != nil {
		return nil, err
	}
	var m releaseMeta
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	if m.Format != metaFormat {
		return nil, fmt.Errorf("read %s: format %d, this agent reads %d", p, m.Format, metaFormat)
	}
	return &m, nil
}

// pruneMeta removes the records of releases whose directory is gone from
// the install dir, except those in protect, and left-over temporary
// directories.
func pruneMeta(dataDir, installDir string, protect []string, log *slog.Logger) error {
	root := metaRoot(dataDir)
	entries, err := os.ReadDir(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var first error
	for _, e := range entries {
		name := e.Name()
		keep := false
		for _, v := range protect {
			keep = keep || v == name
		}
		if keep {
			continue
		}
		if !strings.HasPrefix(name, ".") {
			if _, err := os.Lstat(releaseDir(installDir, name)); err == nil {
				continue
			}
			log.Info("removing the record of a removed release", "version", name)
		}
		if err := os.RemoveAll(filepath.Join(root, name)); err != nil && first == nil {
			first = err
		}
	}
	return first
}
