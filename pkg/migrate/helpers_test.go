package migrate

import (
	"context"
	"database/sql"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/dropless/dropless/pkg/dbtest"
)

// The migration history used by the tests: dbtest's.
var (
	release1     = dbtest.Release1
	release2     = dbtest.Release2
	badMigration = dbtest.BadMigration
	merge        = dbtest.Merge
	without      = dbtest.Without
)

// writeMigrations writes files into a new migrations directory.
func writeMigrations(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "migrations")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func load(t *testing.T, files map[string]string) []Migration {
	t.Helper()
	ms, err := Load(writeMigrations(t, files))
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

// target is one database under test.
type target struct {
	driver, dsn string
	sqlitePath  string // sqlite only
	wal         bool   // the app keeps the SQLite database in WAL mode
}

type targetKind struct {
	name string
	new  func(t *testing.T) *target
}

var targetKinds = []targetKind{
	{"sqlite", func(t *testing.T) *target { return newSQLiteTarget(t, false) }},
	{"sqlite-wal", func(t *testing.T) *target { return newSQLiteTarget(t, true) }},
	{"postgres", newPostgresTarget},
}

// eachTarget runs fn against a fresh database of every kind.
func eachTarget(t *testing.T, fn func(t *testing.T, tg *target)) {
	t.Helper()
	for _, k := range targetKinds {
		t.Run(k.name, func(t *testing.T) {
			fn(t, k.new(t))
		})
	}
}

func newSQLiteTarget(t *testing.T, wal bool) *target {
	p := filepath.Join(t.TempDir(), "data", "app.db")
	if err := os.Mkdir(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	return &target{driver: "sqlite", dsn: p, sqlitePath: p, wal: wal}
}

// newPostgresTarget makes a schema of its own in the test database and
// points search_path at it. PostgreSQL tests run one at a time: a
// fingerprint covers every user schema.
func newPostgresTarget(t *testing.T) *target {
	return &target{driver: "postgres", dsn: dbtest.PostgresSchema(t, "migtest")}
}

func (tg *target) open(t *testing.T) *DB {
	t.Helper()
	db, err := Open(context.Background(), tg.driver, tg.dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// app opens the database as the managed app would.
func (tg *target) app(t *testing.T) *sql.DB {
	t.Helper()
	name := "pgx"
	if tg.driver == "sqlite" {
		name = "sqlite"
	}
	db, err := sql.Open(name, tg.dsn)
	if err != nil {
		t.Fatal(err)
	}
	if tg.wal {
		if _, err := db.Exec("PRAGMA journal_mode=WAL"); err != nil {
			t.Fatal(err)
		}
	}
	return db
}

// appExec runs statements as the app, which then stops (closes).
func (tg *target) appExec(t *testing.T, stmts ...string) {
	t.Helper()
	db := tg.app(t)
	defer db.Close()
	for _, s := range stmts {
		if _, err := db.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// appQuery returns the rows of query as strings, one per row.
func (tg *target) appQuery(t *testing.T, query string) []string {
	t.Helper()
	db := tg.app(t)
	defer db.Close()
	return dbtest.Rows(t, db, query)
}

// fingerprint opens the database afresh and fingerprints it.
func (tg *target) fingerprint(t *testing.T) string {
	t.Helper()
	db, err := Open(context.Background(), tg.driver, tg.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	fp, err := db.Fingerprint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return fp
}

// tables lists the user tables.
func (tg *target) tables(t *testing.T) []string {
	t.Helper()
	if tg.driver == "sqlite" {
		if _, err := os.Stat(tg.sqlitePath); err != nil {
			return nil
		}
		return tg.appQuery(t, "SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
	}
	return tg.appQuery(t, "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename")
}

// applyRelease plans, backs up and applies ms as release.
func applyRelease(t *testing.T, db *DB, ms []Migration, release string) (*Plan, *Backup) {
	t.Helper()
	ctx := context.Background()
	p, err := db.Plan(ctx, ms, PlanOptions{})
	if err != nil {
		t.Fatalf("Plan: %v", err)
	}
	b, err := db.Backup(ctx, filepath.Join(t.TempDir(), "backups", "job"), p)
	if err != nil {
		t.Fatalf("Backup: %v", err)
	}
	if err := db.Up(ctx, p, b, release); err != nil {
		t.Fatalf("Up: %v", err)
	}
	return p, b
}

func recordIDs(t *testing.T, db *DB) []string {
	t.Helper()
	recs, _, err := db.records(context.Background(), db.pool)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range recs {
		out = append(out, r.Name+"@"+r.Release)
	}
	return out
}

// fileIsWAL reads the SQLite header's WAL flag (bytes 18 and 19) from the
// file, without opening it as a database (which could change it).
func fileIsWAL(t *testing.T, path string) bool {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var h [20]byte
	if _, err := io.ReadFull(f, h[:]); err != nil {
		t.Fatal(err)
	}
	return h[18] == 2 && h[19] == 2
}
