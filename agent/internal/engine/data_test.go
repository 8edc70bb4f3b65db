//go:build unix

package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dropless/dropless/pkg/protocol"
)

// dataPaths gives the site three [[data]] paths, as an app like
// PocketBase has them: an uploads directory (files, a subdirectory, a
// symlink, an executable and a read-only file), a second database file
// beside the main one, and a directory the old version never created.
// They are returned in that order.
func withData(t *testing.T, s *testSite) (uploads, aux, later string) {
	t.Helper()
	root := filepath.Join(s.Dir, "appdata")
	uploads, aux, later = filepath.Join(root, "storage"), filepath.Join(root, "aux.db"), filepath.Join(root, "cache")
	for p, c := range map[string]string{
		"storage/a.txt":           "alpha\n",
		"storage/b.bin":           strings.Repeat("\x00\x01binary", 1000),
		"storage/sub/c.txt":       "gamma\n",
		"storage/sub/deep/d.txt":  "delta\n",
		"storage/ro.txt":          "read only\n",
		"storage/run.sh":          "#!/bin/sh\necho hi\n",
		"aux.db":                  "SQLite format 3\x00 pretend second database",
		"storage/sub/deep/e.json": "{}",
	} {
		fp := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(fp), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(fp, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	must(t, os.Chmod(filepath.Join(uploads, "ro.txt"), 0o400))
	must(t, os.Chmod(filepath.Join(uploads, "run.sh"), 0o755))
	must(t, os.Chmod(filepath.Join(uploads, "sub"), 0o750))
	must(t, os.Symlink("sub/c.txt", filepath.Join(uploads, "link")))
	must(t, os.Symlink("missing-target", filepath.Join(uploads, "dangling")))
	s.Data = []string{uploads, aux, later}
	return uploads, aux, later
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// dataFingerprint describes every path of s.Data: each entry's kind,
// mode, modification time, bytes (a hash) or link target; "absent" for a
// path that does not exist.
func dataFingerprint(t *testing.T, s *testSite) []string {
	t.Helper()
	var out []string
	for _, root := range s.Data {
		if _, err := os.Lstat(root); errors.Is(err, fs.ErrNotExist) {
			out = append(out, root+" absent")
			continue
		}
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			line := fmt.Sprintf("%s %v", p, fi.Mode())
			switch {
			case fi.Mode()&fs.ModeSymlink != 0:
				target, err := os.Readlink(p)
				if err != nil {
					return err
				}
				line += " -> " + target
			case fi.Mode().IsRegular():
				b, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				sum := sha256.Sum256(b)
				line += fmt.Sprintf(" %s %d", hex.EncodeToString(sum[:8]), fi.ModTime().UnixNano())
			case fi.IsDir():
				line += fmt.Sprintf(" %d", fi.ModTime().UnixNano())
			}
			out = append(out, line)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// scribble is a post-start hook of a new version that changes the data
// every way a new version can: a file rewritten in place (the same inode:
// a hard-linked snapshot would see the change), a file appended to, one
// removed, one added, a subdirectory added, a symlink re-pointed, a mode
// changed, a file turned into a directory, the second database rewritten,
// and the path that did not exist created.
func scribble(uploads, aux, later string) string {
	return fmt.Sprintf(`#!/bin/sh
set -e
U=%q; AUX=%q; LATER=%q
chmod 600 "$U/ro.txt"; printf 'overwritten in place' 1<>"$U/ro.txt"
printf 'more\n' >> "$U/a.txt"
rm "$U/sub/c.txt"
echo new > "$U/new.txt"
mkdir -p "$U/newdir/x"; echo y > "$U/newdir/x/y"
ln -sfn sub/deep/d.txt "$U/link"
chmod 700 "$U/run.sh"
rm "$U/sub/deep/e.json"; mkdir "$U/sub/deep/e.json"
printf 'SQLite format 3 new schema' 1<>"$AUX"
mkdir -p "$LATER"; echo cached > "$LATER/c"
`, uploads, aux, later)
}

// TestDataRolledBack: a new version that changes the app's data in every
// way and then fails its health check is rolled back, and every [[data]]
// path is exactly as before the job: bytes, modes, times, symlinks, the
// files it added gone, the path it created removed. A good upgrade keeps
// what the new version wrote, and neither leaves a snapshot behind.
func TestDataRolledBack(t *testing.T) {
	s := newSite(t)
	uploads, aux, later := withData(t, s)
	e := s.open(t)
	s.install(t, e, s.release(t, "1.0.0"))
	before := dataFingerprint(t, s)
	if !slices.Contains(before, later+" absent") {
		t.Fatalf("fingerprint %v", before)
	}

	bad := s.releaseWith(t, "1.1.0", relSpec{Opts: []string{"bad"}, Hooks: map[string]string{"post-start": scribble(uploads, aux, later)}})
	st, err := e.Run(context.Background(), bad)
	if err != nil || st.Result != protocol.ResultRolledBack {
		t.Fatalf("Run: %+v %v (%s)", st, err, e.Status().LastError)
	}
	s.checkConsistent(t, e, "1.0.0")
	if got := dataFingerprint(t, s); !slices.Equal(got, before) {
		t.Errorf("data after the rollback differs:\n got %q\nwant %q", got, before)
	}
	_, evs := checkEvents(t, e, bad.JobID)
	if !slices.ContainsFunc(evs, func(ev protocol.Event) bool {
		return ev.State == protocol.StateBackingUp && strings.Contains(ev.Message, "snapshotting the app's data ("+uploads)
	}) {
		t.Errorf("no backing_up event names the data: %+v", evs)
	}
	if left := s.backups(t); len(left) != 0 {
		t.Errorf("snapshots left behind: %v", left)
	}

	// A good release that writes the data keeps what it wrote.
	good := s.releaseWith(t, "1.2.0", relSpec{Hooks: map[string]string{"post-start": scribble(uploads, aux, later)}})
	s.install(t, e, good)
	if b, err := os.ReadFile(filepath.Join(later, "c")); err != nil || string(b) != "cached\n" {
		t.Errorf("after a good upgrade %s/c = %q, %v", later, b, err)
	}
	if left := s.backups(t); len(left) != 0 {
		t.Errorf("snapshots left behind: %v", left)
	}
}

// TestDataSnapshotNotHardLinked: the snapshot is a copy: a file the new
// version rewrites in place leaves the snapshot as it was.
func TestDataSnapshotNotHardLinked(t *testing.T) {
	dir := t.TempDir()
	live := filepath.Join(dir, "live")
	must(t, os.MkdirAll(live, 0o755))
	must(t, os.WriteFile(filepath.Join(live, "f"), []byte("before"), 0o644))
	snap := filepath.Join(dir, "snap")
	must(t, snapshotData(snap, []string{live}))
	f, err := os.OpenFile(filepath.Join(live, "f"), os.O_WRONLY, 0)
	must(t, err)
	_, err = f.WriteAt([]byte("AFTER!"), 0)
	must(t, err)
	must(t, f.Close())
	if b, _ := os.ReadFile(filepath.Join(snap, "0", "f")); string(b) != "before" {
		t.Fatalf("the snapshot changed with the live file: %q", b)
	}
	must(t, restoreData(snap))
	if b, _ := os.ReadFile(filepath.Join(live, "f")); string(b) != "before" {
		t.Fatalf("restored %q", b)
	}
}

// TestDataRestoreConverges: a restore interrupted at any point (here: a
// live tree half restored, with the restore's temporary files left
// beside) is finished by the next one; a snapshot without its manifest
// (the job died while taking it) restores nothing.
func TestDataRestoreConverges(t *testing.T) {
	s := &testSite{Dir: t.TempDir()}
	uploads, aux, later := withData(t, s)
	before := dataFingerprint(t, s)
	snap := filepath.Join(s.Dir, "snap")
	must(t, snapshotData(snap, s.Data))

	// The live data changes, and a restore died half way.
	must(t, os.WriteFile(filepath.Join(uploads, "a.txt"), []byte("changed"), 0o644))
	must(t, os.WriteFile(filepath.Join(uploads, "sub", "c.txt"+restoreTmpSuffix), []byte("half"), 0o600))
	must(t, os.WriteFile(aux+restoreTmpSuffix, []byte("half"), 0o600))
	must(t, os.RemoveAll(aux))
	must(t, os.MkdirAll(later, 0o755))
	must(t, os.RemoveAll(filepath.Join(uploads, "link")))
	must(t, restoreData(snap))
	if got := dataFingerprint(t, s); !slices.Equal(got, before) {
		t.Errorf("after the restore:\n got %q\nwant %q", got, before)
	}
	if _, err := os.Lstat(aux + restoreTmpSuffix); err == nil {
		t.Errorf("%s left behind", aux+restoreTmpSuffix)
	}
	// Again: nothing changes.
	must(t, restoreData(snap))
	if got := dataFingerprint(t, s); !slices.Equal(got, before) {
		t.Errorf("after a second restore:\n got %q\nwant %q", got, before)
	}

	// No manifest: the snapshot was never completed; the data stays.
	must(t, os.Remove(filepath.Join(snap, dataManifestName)))
	must(t, os.WriteFile(filepath.Join(uploads, "a.txt"), []byte("the app's own"), 0o644))
	must(t, restoreData(snap))
	if b, _ := os.ReadFile(filepath.Join(uploads, "a.txt")); string(b) != "the app's own" {
		t.Errorf("an incomplete snapshot was restored: %q", b)
	}
}

// TestDataDiskCheck: preflight counts the data snapshot in the free disk
// it needs, and refuses with the app untouched when it does not fit.
func TestDataDiskCheck(t *testing.T) {
	s := newSite(t)
	e := s.open(t)
	s.install(t, e, s.release(t, "1.0.0"))
	free, known, err := freeSpace(s.DataDir)
	if err != nil || !known {
		t.Skipf("free disk unknown: %v", err)
	}
	// A sparse file as large as the free disk: its snapshot cannot fit.
	big := filepath.Join(s.Dir, "appdata", "huge.db")
	must(t, os.MkdirAll(filepath.Dir(big), 0o755))
	f, err := os.Create(big)
	must(t, err)
	must(t, f.Truncate(int64(free)))
	must(t, f.Close())
	s.Data = []string{filepath.Dir(big)}
	e.Close()
	e = s.open(t)
	pid := s.pid()
	st, err := e.Run(context.Background(), s.release(t, "1.1.0"))
	if err != nil || st.Result != protocol.ResultFailed {
		t.Fatalf("Run: %+v %v", st, err)
	}
	if reason := e.Status().LastError; !strings.Contains(reason, "not enough free disk") || !strings.Contains(reason, "data") {
		t.Errorf("reason %q", reason)
	}
	if s.pid() != pid {
		t.Errorf("the app was restarted")
	}
	s.checkConsistent(t, e, "1.0.0")
}

// TestCrashMatrixData kills the agent at each state of a job that has
// [[data]] and a new version that rewrites them (post-start), then
// recovers: rolled back, the data is exactly as before the job; committed,
// it is what the new version wrote. No snapshot is left either way.
func TestCrashMatrixData(t *testing.T) {
	tests := []struct {
		failpoint string
		bad       bool
		wantOn    string
	}{
		{failpoint: "stopping", wantOn: "1.0.0"},
		{failpoint: "staging", wantOn: "1.0.0"},
		{failpoint: "backing_up", wantOn: "1.0.0"},
		{failpoint: "switching", wantOn: "1.0.0"},
		{failpoint: "starting", wantOn: "1.0.0"},
		{failpoint: "health_check", wantOn: "1.0.0"},
		{failpoint: "rolling_back", bad: true, wantOn: "1.0.0"},
		{failpoint: "committed", wantOn: "1.1.0"},
	}
	for _, tt := range tests {
		t.Run(tt.failpoint, func(t *testing.T) {
			t.Parallel()
			s := newSite(t)
			uploads, aux, later := withData(t, s)
			e := s.open(t)
			s.install(t, e, s.release(t, "1.0.0"))
			e.Close()
			before := dataFingerprint(t, s)
			spec := relSpec{Hooks: map[string]string{"post-start": scribble(uploads, aux, later)}}
			if tt.bad {
				spec.Opts = []string{"bad"}
			}
			a := s.releaseWith(t, "1.1.0", spec)
			if code := runHelper(t, helperSpec{Site: s, Mode: "run", Assignment: a, Failpoint: tt.failpoint}); code != FailpointExitCode {
				t.Fatalf("agent exited %d, want %d", code, FailpointExitCode)
			}
			e = s.open(t)
			if err := e.Recover(context.Background()); err != nil {
				t.Fatal(err)
			}
			s.checkConsistent(t, e, tt.wantOn)
			got := dataFingerprint(t, s)
			if tt.wantOn == "1.0.0" {
				if !slices.Equal(got, before) {
					t.Errorf("data after the recovery differs:\n got %q\nwant %q", got, before)
				}
			} else if b, err := os.ReadFile(filepath.Join(later, "c")); err != nil || string(b) != "cached\n" {
				t.Errorf("committed, but the new version's data is gone: %q %v", b, err)
			}
			if left := s.backups(t); len(left) != 0 {
				t.Errorf("snapshots left behind: %v", left)
			}
		})
	}
}

// TestDataPathIsSymlink: a [[data]] path that is a symlink to the real
// directory protects the directory, not just the link.
func TestDataPathIsSymlink(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "srv-storage")
	must(t, os.MkdirAll(real, 0o755))
	must(t, os.WriteFile(filepath.Join(real, "f"), []byte("before"), 0o644))
	link := filepath.Join(dir, "storage")
	must(t, os.Symlink(real, link))
	snap := filepath.Join(dir, "snap")
	must(t, snapshotData(snap, []string{link}))
	must(t, os.WriteFile(filepath.Join(real, "f"), []byte("after"), 0o644))
	must(t, os.WriteFile(filepath.Join(real, "added"), []byte("x"), 0o644))
	must(t, restoreData(snap))
	if b, _ := os.ReadFile(filepath.Join(real, "f")); string(b) != "before" {
		t.Errorf("f = %q after the restore", b)
	}
	if _, err := os.Lstat(filepath.Join(real, "added")); err == nil {
		t.Error("a file added after the snapshot is still there")
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Errorf("the link itself was replaced: %v %v", fi, err)
	}
	n, err := dataSize([]string{link})
	if err != nil || n != int64(len("before")) {
		t.Errorf("dataSize = %d, %v", n, err)
	}
}

// TestDataRecoveredAfterConfigChange: the agent dies after the new
// version rewrote the data, and comes back with a config that no longer
// lists [[data]]: the recovery still puts the data back from the
// snapshot, whose manifest names the paths.
func TestDataRecoveredAfterConfigChange(t *testing.T) {
	s := newSite(t)
	uploads, aux, later := withData(t, s)
	e := s.open(t)
	s.install(t, e, s.release(t, "1.0.0"))
	e.Close()
	before := dataFingerprint(t, s)
	a := s.releaseWith(t, "1.1.0", relSpec{Hooks: map[string]string{"post-start": scribble(uploads, aux, later)}})
	if code := runHelper(t, helperSpec{Site: s, Mode: "run", Assignment: a, Failpoint: "health_check"}); code != FailpointExitCode {
		t.Fatalf("agent exited %d", code)
	}
	paths := s.Data
	s.Data = nil
	e = s.open(t)
	if err := e.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.checkConsistent(t, e, "1.0.0")
	s.Data = paths
	if got := dataFingerprint(t, s); !slices.Equal(got, before) {
		t.Errorf("data after the recovery differs:\n got %q\nwant %q", got, before)
	}
	if left := s.backups(t); len(left) != 0 {
		t.Errorf("snapshots left behind: %v", left)
	}
}
