//go:build unix

package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// CheckDrift finds files changed, added and removed by hand and
// migrations run by hand, ignores what drift_ignore names, remembers
// intact files, and records the drift for ReadStatus.
func TestCheckDrift(t *testing.T) {
	ctx := context.Background()
	s := newSite(t)
	withSQLite(t, s)
	s.DriftIgnore = []string{"*.log", "cache/"}
	e := s.open(t)
	if d, err := e.CheckDrift(ctx); err != nil || d != nil {
		t.Fatalf("CheckDrift with nothing installed = %q, %v", d, err)
	}
	s.install(t, e, s.releaseWith(t, "1.0.0", relSpec{Migrations: migrations100}))
	if d, err := e.CheckDrift(ctx); err != nil || len(d) != 0 {
		t.Fatalf("CheckDrift after the install = %q, %v", d, err)
	}
	rel := filepath.Join(s.InstallDir, "releases", "1.0.0")

	// Hand changes the agent must see, and files the app writes.
	writeFile(t, filepath.Join(rel, "lib", "data.txt"), "patched\n")
	writeFile(t, filepath.Join(rel, "bin", "hotfix.dll"), "MZ")
	writeFile(t, filepath.Join(rel, "plugins", "a.dll"), "MZ")
	if err := os.Remove(filepath.Join(rel, "bin", "readme.md")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(rel, "VERSION"), 0o600); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(rel, "app.log"), "log\n")
	writeFile(t, filepath.Join(rel, "cache", "x"), "cached\n")
	s.dbExec(t,
		"UPDATE updateagent_migrations SET checksum = 'f00d' WHERE id = 2",
		"INSERT INTO updateagent_migrations (id, name, checksum, applied_at, release) VALUES (9, '0009_hotfix', 'abc', '2026-01-01T00:00:00Z', 'by hand')",
	)
	want := []string{
		"modified: VERSION",
		"added: bin/hotfix.dll",
		"removed: bin/readme.md",
		"modified: lib/data.txt",
		"added: plugins/",
		"migration 0002_add_email: checksum differs from release 1.0.0",
		"migration 0009_hotfix: applied, but release 1.0.0 does not have it",
	}
	d, err := e.CheckDrift(ctx)
	if err != nil || !slices.Equal(d, want) {
		t.Fatalf("CheckDrift =\n%q, %v\nwant\n%q", d, err, want)
	}
	if st := e.Status(); !slices.Equal(st.Drift, want) {
		t.Errorf("Status.Drift = %q", st.Drift)
	}
	if st, err := ReadStatus(s.DataDir); err != nil || !slices.Equal(st.Drift, want) {
		t.Errorf("ReadStatus.Drift = %q, %v", st.Drift, err)
	}

	// A migration reverted by hand.
	s.dbExec(t, "DELETE FROM updateagent_migrations WHERE id = 9", "DELETE FROM updateagent_migrations WHERE id = 2")
	d, _ = e.CheckDrift(ctx)
	if got := d[len(d)-1]; got != "migration 0002_add_email: in release 1.0.0, but not applied" {
		t.Errorf("CheckDrift = %q", d)
	}

	// Everything put back: no drift, in the journal too.
	if err := os.RemoveAll(filepath.Join(rel, "plugins")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(rel, "bin", "hotfix.dll")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(rel, "VERSION"), 0o644); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(rel, "bin", "readme.md"), "the app binary is outside the bundle in this test\n")
	writeFile(t, filepath.Join(rel, "lib", "data.txt"), string(mustRead(t, filepath.Join(s.Dir, "src-1.0.0", "files", "lib", "data.txt"))))
	up := mustRead(t, filepath.Join(metaMigrationsDir(s.DataDir, "1.0.0"), "0002_add_email.up.sql"))
	sum := sha256.Sum256(up)
	s.dbExec(t, "INSERT INTO updateagent_migrations (id, name, checksum, applied_at, release) VALUES (2, '0002_add_email', '"+hex.EncodeToString(sum[:])+"', '2026-01-01T00:00:00Z', '1.0.0')")
	if d, err := e.CheckDrift(ctx); err != nil || len(d) != 0 {
		t.Fatalf("CheckDrift after putting everything back = %q, %v", d, err)
	}
	if st, _ := ReadStatus(s.DataDir); len(st.Drift) != 0 {
		t.Errorf("ReadStatus.Drift = %q", st.Drift)
	}

	// Intact files are not hashed again while their stamp holds: a
	// change that keeps size and time escapes the periodic check (a
	// job's preflight hashes everything).
	p := filepath.Join(rel, "lib", "data.txt")
	fi, _ := os.Stat(p)
	content := mustRead(t, p)
	content[0] ^= 1
	writeFile(t, p, string(content))
	if err := os.Chtimes(p, time.Time{}, fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	if d, _ := e.CheckDrift(ctx); len(d) != 0 {
		t.Errorf("CheckDrift re-hashed an unchanged stamp: %q", d)
	}
	st, err := e.Run(ctx, s.releaseWith(t, "1.1.0", relSpec{Migrations: migrations110}))
	if err != nil || st.Result != "failed" || e.Status().LastError != "drift: modified: lib/data.txt (1 changes by hand to the running 1.0.0): have support review them, then assign the upgrade again accepting the drift to overwrite them" {
		t.Errorf("preflight with a same-size change: %+v, %v, %q", st, err, e.Status().LastError)
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
