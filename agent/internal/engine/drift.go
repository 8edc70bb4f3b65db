package engine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/dropless/dropless/agent/internal/config"
	"github.com/dropless/dropless/pkg/migrate"
)

// Drift is what was changed by hand on a site since the agent installed
// its release: files of the running release modified, added or removed,
// and migrations whose records in the database disagree with the running
// release's bundle. Each change is one line:
//
//	modified: bin/app.dll
//	added: bin/hotfix.dll
//	removed: conf/app.conf
//	migration 0003_orders: checksum differs from release 1.1.0
//	migration 0009_hotfix: applied, but release 1.1.0 does not have it
//	migration 0004_seed: in release 1.1.0, but not applied
//	migration 0005_x: recorded as applied, but release 1.1.0's migration 5 is 0005_y
//	unreadable: conf/secret.conf
//	current: points at releases/1.0.0, not at the installed releases/1.1.0
//
// The truth is the record the agent keeps of each release's bundle (see
// relmeta.go), made from the verified bundle: not the disk as it was
// found. Files matching Config.DriftIgnore (logs the application writes
// into its directory) are not drift.

// maxDrift bounds the drift reported: past it, one last line says how
// many more changes there are.
const maxDrift = 100

// DriftInterval is how often the runner calls CheckDrift between jobs.
const DriftInterval = 5 * time.Minute

// stamp is what a file looked like when its content was last found equal
// to the bundle's: while it still looks so, CheckDrift does not hash it
// again.
type stamp struct {
	size    int64
	modTime int64
	mode    fs.FileMode
}

func stampOf(fi fs.FileInfo) stamp {
	return stamp{size: fi.Size(), modTime: fi.ModTime().UnixNano(), mode: fi.Mode()}
}

// driftCache remembers the stamps of the files of one release found
// intact. Used by one goroutine at a time (runMu).
type driftCache struct {
	version string
	stamps  map[string]stamp
	noMeta  bool // the missing record was logged
}

// compareRelease compares the release directory dir with the bundle's
// files and returns the differences, sorted by path. With a cache, files
// whose stamp did not change since they were last found intact are not
// hashed again; without one everything is hashed.
func compareRelease(dir string, files []fileEntry, ignore []string, cache map[string]stamp) ([]string, error) {
	want := make(map[string]fileEntry, len(files))
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
		if ignored(rel, d.IsDir(), ignore) {
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
		case f.isDir():
			if !fi.IsDir() {
				add(rel, "modified")
			}
		case f.isSymlink():
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
				delete(cache, rel)
				return nil
			}
			st := stampOf(fi)
			if old, ok := cache[rel]; ok && old == st {
				return nil
			}
			sum, err := fileSHA256(p)
			switch {
			case err != nil:
				add(rel, "unreadable")
			case sum != f.SHA256:
				add(rel, "modified")
				delete(cache, rel)
			case cache != nil:
				cache[rel] = st
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
		if seen[f.Path] || ignored(f.Path, f.isDir(), ignore) {
			continue
		}
		if slices.ContainsFunc(gone, func(g string) bool { return strings.HasPrefix(f.Path, g+"/") }) {
			continue
		}
		gone = append(gone, f.Path)
		name := f.Path
		if f.isDir() {
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

// ignored reports whether the release path rel (slash-separated) matches
// one of the drift_ignore patterns: a pattern without a slash matches the
// base name at any depth ("*.log"); one with a slash matches the whole
// path ("data/cache/*"); a pattern ending in "/" matches a directory and
// everything under it ("logs/").
func ignored(rel string, isDir bool, patterns []string) bool {
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

// validateDriftIgnore checks drift_ignore patterns (path.Match syntax).
func validateDriftIgnore(patterns []string) error {
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

// migrationDrift compares the database's migration records with the
// migrations of release v (its record in the data dir): a recorded
// migration whose checksum or name differs (a migration edited or run by
// hand under a released number), one recorded that the release does not
// have (run by hand), one of the release that is not recorded (reverted
// by hand).
func migrationDrift(ctx context.Context, dbCfg *config.Database, dataDir, v string) ([]string, error) {
	ms, err := migrate.Load(metaMigrationsDir(dataDir, v))
	if err != nil {
		return nil, err
	}
	recs, err := migrate.ReadRecords(ctx, dbCfg.Driver, dbCfg.DSN)
	if err != nil {
		return nil, err
	}
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
	return out, nil
}

// capDrift bounds a drift list to maxDrift lines.
func capDrift(d []string) []string {
	if len(d) <= maxDrift {
		return d
	}
	out := slices.Clone(d[:maxDrift-1])
	return append(out, fmt.Sprintf("... and %d more changes", len(d)-(maxDrift-1)))
}

// siteDrift computes the drift of the running release v: its files (with
// cache, nil to hash every file) and, when the agent has a database,
// its migration records. A release the agent has no record of has no
// known drift (errNoMeta).
func (e *Engine) siteDrift(ctx context.Context, v string, cache map[string]stamp) ([]string, error) {
	m, err := loadReleaseMeta(e.cfg.DataDir, v)
	if err != nil {
		return nil, err
	}
	var drift []string
	if link, ok, err := readCurrent(e.cfg.InstallDir); err == nil && ok && link != releaseLink(v) {
		drift = append(drift, fmt.Sprintf("current: points at %s, not at the installed releases/%s", link, v))
	} else if err != nil {
		drift = append(drift, "current: "+err.Error())
	}
	files, err := compareRelease(releaseDir(e.cfg.InstallDir, v), m.Files, e.cfg.DriftIgnore, cache)
	if err != nil {
		return nil, fmt.Errorf("compare releases/%s with its bundle: %w", v, err)
	}
	drift = append(drift, files...)
	if e.cfg.Database != nil {
		md, err := migrationDrift(ctx, e.cfg.Database, e.cfg.DataDir, v)
		if err != nil {
			return drift, fmt.Errorf("database: %w", err)
		}
		drift = append(drift, md...)
	}
	return drift, nil
}

// CheckDrift computes the site's drift (see Drift) and records it: in
// Status().Drift, in the journal for `updateagent status`, and it
// returns it. It is cheap enough to call every few minutes (the runner
// calls it on start, after every job and every DriftInterval): a file is
// hashed again only when its size, time or mode changed since it was last
// found intact; every job's preflight hashes everything. Between jobs
// only: while a job runs CheckDrift returns the last drift found.
//
// A database that cannot be read leaves its part out (the error says
// so); the files' drift is still recorded.
func (e *Engine) CheckDrift(ctx context.Context) ([]string, error) {
	if !e.runMu.TryLock() {
		return e.Status().Drift, nil
	}
	defer e.runMu.Unlock()
	v := e.Status().InstalledVersion
	if v == "" {
		return nil, e.recordDrift(ctx, nil)
	}
	if e.drift.version != v || e.drift.stamps == nil {
		e.drift = driftCache{version: v, stamps: map[string]stamp{}}
	}
	d, err := e.siteDrift(ctx, v, e.drift.stamps)
	if errors.Is(err, errNoMeta) {
		if !e.drift.noMeta {
			e.log.Warn("drift not checked: the agent has no record of the installed release's bundle (installed before the agent kept one); the next upgrade records it", "version", v)
			e.drift.noMeta = true
		}
		return nil, e.recordDrift(ctx, nil)
	}
	if err != nil && d == nil {
		return e.Status().Drift, err
	}
	d = capDrift(d)
	if rerr := e.recordDrift(ctx, d); rerr != nil && err == nil {
		err = rerr
	}
	return d, err
}

// recordDrift writes d to the journal when it changed.
func (e *Engine) recordDrift(ctx context.Context, d []string) error {
	if slices.Equal(d, e.Status().Drift) {
		return nil
	}
	if len(d) > 0 {
		e.log.Warn("drift: the running release was changed by hand", "changes", len(d), "first", d[0])
	}
	if err := e.j.setDrift(context.WithoutCancel(ctx), d); err != nil {
		return err
	}
	return e.refresh(ctx)
}

// driftError is a preflight refusal for drift: its message starts with
// "drift:".
type driftError struct {
	version string
	changes []string
}

func (e *driftError) Error() string {
	const show = 5
	list := strings.Join(e.changes[:min(len(e.changes), show)], ", ")
	more := ""
	if len(e.changes) > show {
		more = fmt.Sprintf(" and %d more", len(e.changes)-show)
	}
	return fmt.Sprintf("drift: %s%s (%d changes by hand to the running %s): have support review them, then assign the upgrade again accepting the drift to overwrite them",
		list, more, len(e.changes), e.version)
}

// driftSummary is a short list of changes for an event.
func driftSummary(d []string) string {
	const show = 3
	s := strings.Join(d[:min(len(d), show)], ", ")
	if len(d) > show {
		s += fmt.Sprintf(" and %d more", len(d)-show)
	}
	return s
}
