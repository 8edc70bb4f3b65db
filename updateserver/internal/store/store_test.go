package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/store/storetest"
)

func openTemp(t *testing.T) (*Store, string) {
	t.Helper()
	path := storetest.Path(t)
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

// openTwo opens two stores on one fresh database, as two server replicas
// share one.
func openTwo(t *testing.T) (a, b *Store) {
	t.Helper()
	a, path := openTemp(t)
	b, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return a, b
}

// sqliteOnly skips a test of SQLite's own schema and files when the suite
// runs on PostgreSQL (its twin is in postgres_test.go).
func sqliteOnly(t *testing.T) {
	t.Helper()
	if storetest.Postgres() {
		t.Skip("a test of the SQLite store's files; the PostgreSQL twin is in postgres_test.go")
	}
}

// TestSchemaFrozen: the released schema is frozen in testdata. Changing a
// released migration breaks every server that already ran it; add a new
// migration instead (and freeze its schema as testdata/schema-N.sql).
func TestSchemaFrozen(t *testing.T) {
	sqliteOnly(t)
	s, _ := openTemp(t)
	got := dumpSchema(t, s.db)
	name := filepath.Join("testdata", fmt.Sprintf("schema-%d.sql", SchemaVersion))
	want, err := os.ReadFile(name)
	if err != nil {
		t.Fatalf("freeze the current schema as %s: %v", name, err)
	}
	if got != string(want) {
		t.Fatalf("schema differs from %s:\n%s", name, got)
	}
}

func dumpSchema(t *testing.T, db *sql.DB) string {
	t.Helper()
	rows, err := db.Query(`SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var s string
		rows.Scan(&s)
		b.WriteString(s + ";\n")
	}
	return b.String()
}

// TestSchemaMigratesFromFrozen: a database created by every frozen schema
// opens and reaches the current version.
func TestSchemaMigratesFromFrozen(t *testing.T) {
	sqliteOnly(t)
	frozen, _ := filepath.Glob(filepath.Join("testdata", "schema-*.sql"))
	if len(frozen) == 0 {
		t.Fatal("no frozen schemas in testdata")
	}
	for _, f := range frozen {
		t.Run(filepath.Base(f), func(t *testing.T) {
			ddl, _ := os.ReadFile(f)
			var v int
			if _, err := fmtSscan(filepath.Base(f), &v); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "old.db")
			db, err := sql.Open("sqlite", path)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := db.Exec(string(ddl)); err != nil {
				t.Fatal(err)
			}
			db.Exec(`PRAGMA user_version = ` + strings.TrimSuffix(strings.TrimPrefix(filepath.Base(f), "schema-"), ".sql"))
			db.Close()
			s, err := Open(context.Background(), path)
			if err != nil {
				t.Fatalf("open a v%d database: %v", v, err)
			}
			defer s.Close()
			var got int
			s.db.QueryRow("PRAGMA user_version").Scan(&got)
			if got != SchemaVersion {
				t.Fatalf("user_version %d, want %d", got, SchemaVersion)
			}
		})
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	sqliteOnly(t)
	s, path := openTemp(t)
	if err := s.tx(context.Background(), func(tx *sql.Tx) error { _, err := tx.Exec(`PRAGMA user_version = 999`); return err }); err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, err := Open(context.Background(), path)
	if err == nil || !strings.Contains(err.Error(), "newer than this server knows") {
		t.Fatalf("err = %v", err)
	}
}

func TestReleasesPersistAndConflict(t *testing.T) {
	s, path := openTemp(t)
	ctx := context.Background()
	now := time.Now()
	rel := protocol.Release{Product: "p", Version: "1.2", Target: "p/p-1.2.tar.gz", SHA256: "ab", Length: 1, PublishedAt: now, PublishedBy: "t", Channels: []string{"qa"}}
	if err := s.PublishRelease(ctx, Publish{Release: rel, Metadata: []Metadata{{Role: "targets", Version: 2, Data: []byte("{}")}}, Audit: Audit{Actor: "t", Action: "release.publish"}}); err != nil {
		t.Fatal(err)
	}
	dup := rel
	dup.Version, dup.Target = "1.2.0", "p/p-1.2.0.tar.gz"
	err := s.PublishRelease(ctx, Publish{Release: dup, Audit: Audit{Actor: "t"}})
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("same version in another spelling: %v", err)
	}
	// Metadata someone else signed meanwhile: the whole publish is undone.
	other := rel
	other.Version, other.Target = "1.3.0", "p/p-1.3.0.tar.gz"
	err = s.PublishRelease(ctx, Publish{Release: other, Metadata: []Metadata{{Role: "targets", Version: 2, Data: []byte("{}")}}, Audit: Audit{Actor: "t"}})
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("metadata version clash: %v", err)
	}
	if _, err := s.GetRelease(ctx, "p", "1.3.0"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("release of a failed publish exists: %v", err)
	}
	s.Close()
	s2, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	got, err := s2.GetRelease(ctx, "p", "1.2.0")
	if err != nil || got.Version != "1.2" || len(got.Channels) != 1 {
		t.Fatalf("after reopen: %+v %v", got, err)
	}
}

// TestGroupCommitIsolatesFailures: many writers at once share commits, and
// one writer's failure undoes only its own changes.
func TestGroupCommitIsolatesFailures(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	const n = 200
	errs := make(chan error, n)
	for i := range n {
		go func() {
			secret := fmt.Sprintf("secret-%d", i)
			if i%10 == 0 {
				secret = "duplicate" // all but one of these fail: hash is UNIQUE
			}
			_, err := s.CreateToken(ctx, time.Now(), fmt.Sprintf("t%d", i), "viewer", secret, "test")
			errs <- err
		}()
	}
	failed := 0
	for range n {
		if err := <-errs; err != nil {
			failed++
		}
	}
	if failed != n/10-1 {
		t.Fatalf("%d writers failed, want %d", failed, n/10-1)
	}
	tokens, _ := s.CountTokens(ctx)
	audits, _ := s.AuditLog(ctx, AuditQuery{Limit: 1000})
	if tokens != n-failed || len(audits) != tokens {
		t.Fatalf("%d tokens and %d audit entries after %d successful writers: a failed writer's changes leaked or a good one's were lost", tokens, len(audits), n-failed)
	}
}

// TestStoredTimesSortAsTimes: the store orders and compares times as
// text, so the text of times within one second sorts as the times do
// (a whole second, a tenth, fifteen hundredths), and reads back.
func TestStoredTimesSortAsTimes(t *testing.T) {
	base := time.Date(2026, 11, 28, 1, 10, 5, 0, time.UTC)
	times := []time.Time{base, base.Add(100 * time.Millisecond), base.Add(150 * time.Millisecond), base.Add(150*time.Millisecond + 1), base.Add(time.Second)}
	for i := 1; i < len(times); i++ {
		a, b := formatTime(times[i-1]), formatTime(times[i])
		if a >= b {
			t.Errorf("%s sorts at or after %s, but is the earlier time", a, b)
		}
	}
	for _, at := range times {
		if got := parseTime(formatTime(at)); !got.Equal(at) {
			t.Errorf("%s reads back as %s", formatTime(at), got)
		}
	}
	if got := parseTime("2026-11-28T01:10:05.1Z"); !got.Equal(times[1]) {
		t.Errorf("a time written with its fraction trimmed reads back as %s", got)
	}
}
