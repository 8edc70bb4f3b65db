// Package drift finds what was changed by hand on a site since the agent
// installed its release: files of the running release modified, added or
// removed, migrations whose records in the database disagree with the
// release's bundle, and the database's schema changed since the last job
// (a SQL script run by hand: see Schema). The engine calls it between jobs (CheckDrift) and in
// every job's preflight, and records what it found for `updateagent
// status`. Each change is one line:
//
//	modified: bin/app.dll
//	added: bin/hotfix.dll
//	removed: conf/app.conf
//	migration 0003_orders: checksum differs from release 1.1.0
//	migration 0009_hotfix: applied, but release 1.1.0 does not have it
//	migration 0004_seed: in release 1.1.0, but not applied
//	migration 0005_x: recorded as applied, but release 1.1.0's migration 5 is 0005_y
//	unreadable: conf/secret.conf
//	schema: added column customers.hotfix_flag
//
// The truth is the record the agent keeps of each release's bundle (its
// files as File entries, its migrations), made from the verified bundle:
// not the disk as it was found. Paths matching the agent's drift_ignore
// patterns (logs the application writes into its directory) are not
// drift.
package drift

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"github.com/dropless/dropless/pkg/migrate"
)

// Max bounds the drift reported: past it, one last line says how many
// more changes there are (see Cap).
const Max = 100

// File is one entry of a release's files/, as the agent recorded it from
// the verified bundle (release.json lists them): a path relative to the
// release directory (slash-separated), its size, mode, SHA-256 (hex) of a
// regular file and target of a symlink.
type File struct {
	Path   string      `json:"path"`
	Size   int64       `json:"size,omitempty"`
	Mode   fs.FileMode `json:"mode"`
	SHA256 string      `json:"sha256,omitempty"`
	Link   string      `json:"link,omitempty"`
}

// IsDir reports whether the entry is a directory.
func (f File) IsDir() bool { return f.Mode.IsDir() }

// IsSymlink reports whether the entry is a symlink.
func (f File) IsSymlink() bool { return f.Mode&fs.ModeSymlink != 0 }

// stamp is what a file looked like when its content was last found equal
// to the record's.
type stamp struct {
	size    int64
	modTime int64
	mode    fs.FileMode
}

func stampOf(fi fs.FileInfo) stamp {
	return stamp{size: fi.Size(), modTime: fi.ModTime().UnixNano(), mode: fi.Mode()}
}

// Stamps remembers the files of one release found intact: while a file
// still has the size, time and mode it had then, Files does not hash it
// again. Make one with make(Stamps) per release; used by one goroutine
// at a time.
type Stamps map[string]stamp

// Files compares the release directory dir with the record of its files
// and returns the differences ("modified: p", "added: p", "removed: p",
// "unreadable: p"), sorted by path. Paths matching ignore (see Ignored)
// are left out. With stamps, files whose stamp did not change since they
// were last found intact are not hashed again; with nil, every file is.
func Files(dir string, files []File, ignore []string, stamps Stamps) ([]string, error) {
	want := make(map[string]File, len(files))
	for _, f := range files {
		want[f.Path] = f
	}
	type change struct{ path, line string }
	var changes []change
	add := func(p, kind string) { changes = append(changes, change{p, kind + ": " + p}) }
	seen := make(map[string]bool, len(files))
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == dir {
				return err
			}
			// Unreadable: report it rather than give up.
			rel := relSlash(dir, p)
			add(rel, "unreadable")
			seen[rel] = true
			if d != nil && d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if p == dir {
			return nil
		}
		rel := relSlash(dir, p)
		if Ignored(rel, d.IsDir(), ignore) {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		f, ok := want[rel]
		if !ok {
			if d.IsDir() {
				add(rel+"/", "added")
				return fs.SkipDir
			}
			add(rel, "added")
			return nil
		}
		seen[rel] = true
		fi, err := d.Info()
		if err != nil {
			add(rel, "unreadable")
			return nil
		}
		switch {
		case f.IsDir():
			if !fi.IsDir() {
				add(rel, "modified")
			}
		case f.IsSymlink():
			target, err := os.Readlink(p)
			if fi.Mode()&fs.ModeSymlink == 0 || err != nil || filepath.ToSlash(target) != f.Link {
				add(rel, "modified")
			}
			if fi.IsDir() {
				return fs.SkipDir
			}
		default:
			if !fi.Mode().IsRegular() {
				add(rel, "modified")
				if fi.IsDir() {
					return fs.SkipDir
				}
				return nil
			}
			if fi.Size() != f.Size || (runtime.GOOS != "windows" && fi.Mode().Perm() != f.Mode.Perm()) {
				add(rel, "modified")
				delete(stamps, rel)
				return nil
			}
			st := stampOf(fi)
			if old, ok := stamps[rel]; ok && old == st {
				return nil
			}
			sum, err := HashFile(p)
			switch {
			case err != nil:
				add(rel, "unreadable")
			case sum != f.SHA256:
				add(rel, "modified")
				delete(stamps, rel)
			case stamps != nil:
				stamps[rel] = st
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// Removed: only the topmost missing entry of a removed tree.
	var gone []string
	for _, f := range files {
		if seen[f.Path] || Ignored(f.Path, f.IsDir(), ignore) {
			continue
		}
		if slices.ContainsFunc(gone, func(g string) bool { return strings.HasPrefix(f.Path, g+"/") }) {
			continue
		}
		gone = append(gone, f.Path)
		name := f.Path
		if f.IsDir() {
			name += "/"
		}
		changes = append(changes, change{f.Path, "removed: " + name})
	}
	slices.SortStableFunc(changes, func(a, b change) int { return strings.Compare(a.path, b.path) })
	out := make([]string, len(changes))
	for i, c := range changes {
		out[i] = c.line
	}
	return out, nil
}

func relSlash(dir, p string) string {
	rel, err := filepath.Rel(dir, p)
	if err != nil {
		return filepath.ToSlash(p)
	}
	return filepath.ToSlash(rel)
}

// HashFile returns the SHA-256 (hex) of the file at p.
func HashFile(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", p, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Ignored reports whether the release path rel (slash-separated) matches
// one of the drift_ignore patterns: a pattern without a slash matches the
// base name at any depth ("*.log"); one with a slash matches the whole
// path ("data/cache/*"); a pattern ending in "/" matches a directory and
// everything under it ("logs/").
func Ignored(rel string, isDir bool, patterns []string) bool {
	for _, pat := range patterns {
		dirOnly := strings.HasSuffix(pat, "/")
		pat = strings.TrimSuffix(pat, "/")
		if dirOnly {
			// The directory itself, or anything under it.
			for p := rel; p != "." && p != ""; p = path.Dir(p) {
				if (p != rel || isDir) && matchPattern(pat, p) {
					return true
				}
			}
			continue
		}
		if matchPattern(pat, rel) {
			return true
		}
	}
	return false
}

func matchPattern(pat, rel string) bool {
	if !strings.Contains(pat, "/") {
		ok, _ := path.Match(pat, path.Base(rel))
		return ok
	}
	ok, _ := path.Match(pat, rel)
	return ok
}

// ValidateIgnore checks drift_ignore patterns (path.Match syntax).
func ValidateIgnore(patterns []string) error {
	for _, p := range patterns {
		if strings.TrimSuffix(p, "/") == "" {
			return fmt.Errorf("drift_ignore: empty pattern")
		}
		if _, err := path.Match(strings.TrimSuffix(p, "/"), ""); err != nil {
			return fmt.Errorf("drift_ignore %q: %v", p, err)
		}
	}
	return nil
}

// Migrations compares the database's migration records recs
// (migrate.ReadRecords) with the migrations ms of release v: a recorded
// migration whose checksum or name differs (a migration edited or run by
// hand under a released number), one recorded that the release does not
// have (run by hand), one of the release that is not recorded (reverted
// by hand).
func Migrations(v string, ms []migrate.Migration, recs []migrate.Applied) []string {
	byID := make(map[int]migrate.Migration, len(ms))
	for _, m := range ms {
		byID[m.ID] = m
	}
	var out []string
	seen := map[int]bool{}
	for _, r := range recs {
		seen[r.ID] = true
		m, ok := byID[r.ID]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("migration %s: applied, but release %s does not have it", r.Name, v))
		case m.Name != r.Name:
			out = append(out, fmt.Sprintf("migration %s: recorded as applied, but release %s's migration %d is %s", r.Name, v, r.ID, m.Name))
		case m.Checksum != r.Checksum:
			out = append(out, fmt.Sprintf("migration %s: checksum differs from release %s", r.Name, v))
		}
	}
	for _, m := range ms {
		if !seen[m.ID] {
			out = append(out, fmt.Sprintf("migration %s: in release %s, but not applied", m.Name, v))
		}
	}
	return out
}

// Cap bounds a drift list to Max lines.
func Cap(d []string) []string {
	if len(d) <= Max {
		return d
	}
	out := slices.Clone(d[:Max-1])
	return append(out, fmt.Sprintf("... and %d more changes", len(d)-(Max-1)))
}

// Error is a preflight refusal for drift: its message starts with
// "drift:" and says what support does about it.
type Error struct {
	Version string   // the running release
	Changes []string // the drift found
}

func (e *Error) Error() string {
	const show = 5
	list := strings.Join(e.Changes[:min(len(e.Changes), show)], ", ")
	more := ""
	if len(e.Changes) > show {
		more = fmt.Sprintf(" and %d more", len(e.Changes)-show)
	}
	return fmt.Sprintf("drift: %s%s (%d changes by hand to the running %s): have support review them, then assign the upgrade again accepting the drift to overwrite them",
		list, more, len(e.Changes), e.Version)
}

// Summary is a short list of changes, for an event.
func Summary(d []string) string {
	const show = 3
	s := strings.Join(d[:min(len(d), show)], ", ")
	if len(d) > show {
		s += fmt.Sprintf(" and %d more", len(d)-show)
	}
	return s
}
