package engine

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/dropless/dropless/pkg/atomicfile"
)

// The app's other data ([[data]] in the agent's config, Config.Data):
// files and directories (uploads, a second database file) that a rollback
// must put back as they were, like the database. The backing_up step
// snapshots them, the app being stopped, into
//
//	<data_dir>/backups/<job>/data/<i>            a copy of the i-th path
//	<data_dir>/backups/<job>/data/manifest.json  the paths and what each was
//
// and rolling_back mirrors each copy back over its path: the same files
// with the same bytes, modes, owners, modification times and symlinks,
// whatever the new version added removed, a path that did not exist
// removed again. manifest.json is written (atomically, after every copy
// was synced) last: without it the snapshot is incomplete, which means the
// job died while taking it, before anything of the new version ran, and
// the rollback leaves the data alone. The restore works from the snapshot
// alone (the paths come from the manifest, not from the config) and is
// idempotent: after a crash it runs again and converges.
//
// A copy, never a hard link: the new version may rewrite a file in place,
// and a hard link would carry that change into the snapshot. On Linux the
// copy is a reflink (FICLONE) where the file system offers copy-on-write
// (btrfs, XFS), and otherwise copy_file_range, which the kernel may also
// share extents for. Sockets, FIFOs and devices are not copied. A
// configured path that is a symlink is followed: its target is the data.
const (
	dataSnapDir      = "data"
	dataManifestName = "manifest.json"
	// restoreTmpSuffix names the temporary files a restore writes beside
	// the live ones before renaming them in place.
	restoreTmpSuffix = ".updateagent-restore"
)

func (jb *job) dataSnapshot() string { return filepath.Join(jb.backupDir(), dataSnapDir) }

// hasDataSnapshot says whether the job left a data snapshot.
func (jb *job) hasDataSnapshot() bool {
	_, err := os.Lstat(jb.dataSnapshot())
	return err == nil
}

// dataManifest lists a snapshot's paths.
type dataManifest struct {
	Version int         `json:"version"`
	Paths   []dataEntry `json:"paths"`
}

// dataEntry is one snapshotted path: Kind is "absent" when it did not
// exist, else "dir", "file" or "symlink"; the copy is the entry named by
// its index.
type dataEntry struct {
	Path string `json:"path"`
	Kind string `json:"kind"`
}

// snapshotData copies every path into dir (made afresh) and writes the
// manifest last. The app must be stopped.
func snapshotData(dir string, paths []string) error {
	if err := removeAll(dir); err != nil {
		return fmt.Errorf("snapshot data: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("snapshot data: %w", err)
	}
	m := dataManifest{Version: 1}
	for i, p := range paths {
		p = followLink(p)
		fi, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			m.Paths = append(m.Paths, dataEntry{Path: p, Kind: "absent"})
			continue
		}
		if err != nil {
			return fmt.Errorf("snapshot %s: %w", p, err)
		}
		if err := mirror(p, filepath.Join(dir, fmt.Sprint(i))); err != nil {
			return fmt.Errorf("snapshot %s: %w", p, err)
		}
		m.Paths = append(m.Paths, dataEntry{Path: p, Kind: kindOf(fi)})
	}
	// Every copy durable before the manifest says the snapshot is whole.
	if err := syncFS(dir); err != nil {
		return fmt.Errorf("snapshot data: sync: %w", err)
	}
	if err := atomicfile.SyncDir(dir); err != nil {
		return err
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(dir, dataManifestName), b, 0o600)
}

// followLink returns the path a configured path that is a symlink points
// at (the app's data lives there: /opt/app/storage -> /srv/storage), else
// the path itself.
func followLink(p string) string {
	if fi, err := os.Lstat(p); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			return real
		}
	}
	return p
}

func kindOf(fi fs.FileInfo) string {
	switch {
	case fi.IsDir():
		return "dir"
	case fi.Mode()&fs.ModeSymlink != 0:
		return "symlink"
	case fi.Mode().IsRegular():
		return "file"
	}
	return "other"
}

// restoreData puts every path of the snapshot in dir back. A snapshot
// without its manifest is incomplete: nothing to restore (the data was not
// touched). Idempotent.
func restoreData(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, dataManifestName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("restore data: %w", err)
	}
	var m dataManifest
	if err := json.Unmarshal(b, &m); err != nil || m.Version != 1 {
		return fmt.Errorf("restore data: %s is damaged (%v): restore the paths by hand from %s", filepath.Join(dir, dataManifestName), err, dir)
	}
	for i, e := range m.Paths {
		if !filepath.IsAbs(e.Path) {
			return fmt.Errorf("restore data: %s names %q, not an absolute path", filepath.Join(dir, dataManifestName), e.Path)
		}
		if err := restorePath(filepath.Join(dir, fmt.Sprint(i)), e); err != nil {
			return fmt.Errorf("restore %s (snapshot in %s): %w", e.Path, dir, err)
		}
	}
	return nil
}

func restorePath(copy string, e dataEntry) error {
	parent := filepath.Dir(e.Path)
	if e.Kind == "absent" {
		if err := removeAll(e.Path); err != nil {
			return err
		}
		return removeAll(e.Path + restoreTmpSuffix)
	}
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return err
	}
	if err := mirror(copy, e.Path); err != nil {
		return err
	}
	if err := syncFS(e.Path); err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	return atomicfile.SyncDir(parent)
}

// mirror makes dst an exact copy of src (which exists): a directory's
// entries that src lacks are removed, files whose bytes differ are
// replaced (written beside, synced, renamed over), and every entry gets
// src's mode, owner (where the agent may set it) and modification time.
// Unchanged files are not rewritten. Nothing is synced: the caller syncs
// the whole tree once (syncFS), which costs far less than a sync per file.
func mirror(src, dst string) error {
	fi, err := os.Lstat(src)
	if err != nil {
		return err
	}
	dfi, derr := os.Lstat(dst)
	if derr != nil && !errors.Is(derr, fs.ErrNotExist) {
		return derr
	}
	exists := derr == nil
	if exists && kindOf(dfi) != kindOf(fi) {
		if err := os.RemoveAll(dst); err != nil {
			return err
		}
		exists = false
	}
	switch kindOf(fi) {
	case "dir":
		if !exists {
			if err := os.Mkdir(dst, 0o700); err != nil {
				return err
			}
		}
		want, err := os.ReadDir(src)
		if err != nil {
			return err
		}
		names := make([]string, 0, len(want))
		for _, e := range want {
			names = append(names, e.Name())
		}
		if exists {
			have, err := os.ReadDir(dst)
			if err != nil {
				return err
			}
			for _, e := range have {
				if !slices.Contains(names, e.Name()) {
					if err := os.RemoveAll(filepath.Join(dst, e.Name())); err != nil {
						return err
					}
				}
			}
		}
		for _, e := range want {
			if !e.Type().IsDir() && !e.Type().IsRegular() && e.Type()&fs.ModeSymlink == 0 {
				continue // a socket, FIFO or device: not data to copy
			}
			if err := mirror(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())); err != nil {
				return err
			}
		}
		return setMeta(dst, fi)
	case "symlink":
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		if exists {
			if t, err := os.Readlink(dst); err == nil && t == target {
				return setOwner(dst, fi)
			}
		}
		tmp := dst + restoreTmpSuffix
		if err := os.RemoveAll(tmp); err != nil {
			return err
		}
		if err := os.Symlink(target, tmp); err != nil {
			return err
		}
		if err := setOwner(tmp, fi); err != nil {
			return err
		}
		return os.Rename(tmp, dst)
	case "file":
		if exists && dfi.Size() == fi.Size() {
			same, err := sameBytes(src, dst)
			if err != nil {
				return err
			}
			if same {
				return setMeta(dst, fi)
			}
		}
		tmp := dst + restoreTmpSuffix
		if err := cloneOrCopy(src, tmp); err != nil {
			os.Remove(tmp)
			return err
		}
		if err := setMeta(tmp, fi); err != nil {
			return err
		}
		return os.Rename(tmp, dst)
	}
	return nil
}

// cloneOrCopy writes a copy of src at dst (replaced), not synced: a
// reflink where the file system can (see cloneFile), else a copy.
func cloneOrCopy(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.RemoveAll(dst); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if !cloneFile(out, in) {
		// *os.File to *os.File: copy_file_range on Linux.
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
	}
	return out.Close()
}

// sameBytes reports whether two files of the same size hold the same bytes.
func sameBytes(a, b string) (bool, error) {
	fa, err := os.Open(a)
	if err != nil {
		return false, err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return false, err
	}
	defer fb.Close()
	ba, bb := make([]byte, 64<<10), make([]byte, 64<<10)
	for {
		na, ea := io.ReadFull(fa, ba)
		nb, eb := io.ReadFull(fb, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			return false, nil
		}
		if ea == io.EOF || ea == io.ErrUnexpectedEOF {
			return eb == ea, nil
		}
		if ea != nil {
			return false, ea
		}
		if eb != nil {
			return false, eb
		}
	}
}

// setMeta gives p fi's owner, mode and modification time (in that order:
// chown clears set-id bits).
func setMeta(p string, fi fs.FileInfo) error {
	if err := setOwner(p, fi); err != nil {
		return err
	}
	if err := os.Chmod(p, fi.Mode()&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil {
		return err
	}
	return os.Chtimes(p, fi.ModTime(), fi.ModTime())
}

// dataSize is the bytes of the regular files under paths: what their
// snapshot takes at most.
func dataSize(paths []string) (int64, error) {
	var n int64
	for _, p := range paths {
		err := filepath.WalkDir(followLink(p), func(_ string, d fs.DirEntry, err error) error {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			if err != nil {
				return err
			}
			if d.Type().IsRegular() {
				fi, err := d.Info()
				if err != nil {
					return err
				}
				n += fi.Size()
			}
			return nil
		})
		if err != nil {
			return 0, fmt.Errorf("size of %s: %w", p, err)
		}
	}
	return n, nil
}
