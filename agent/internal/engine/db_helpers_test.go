//go:build unix

package engine

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/dropless/dropless/agent/internal/config"
	"github.com/dropless/dropless/pkg/dbtest"
	"github.com/dropless/dropless/pkg/migrate"
)

// The client database of the tests: a real SQLite file (modernc), or a
// schema of its own in the PostgreSQL database TEST_POSTGRES_DSN names.

// The product's migration history: dbtest's.
var (
	migrations100     = dbtest.Release1
	migrations110     = dbtest.Release2
	badMigration      = dbtest.BadMigration
	withMigrations    = dbtest.Merge
	withoutMigrations = dbtest.Without
)

// clientRows are the client's data, written by "the app" before an
// upgrade.
var clientRows = []string{
	"INSERT INTO customers (id, name, email) VALUES (1, 'alice', 'alice@example.com')",
	"INSERT INTO customers (id, name, email) VALUES (2, 'bob', NULL)",
}

// withSQLite gives the site a SQLite database (the file does not exist
// yet: the first migration creates it).
func withSQLite(t *testing.T, s *testSite) {
	t.Helper()
	dir := filepath.Join(s.Dir, "appdata")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s.Database = &config.Database{Driver: "sqlite", DSN: filepath.Join(dir, "app.db")}
}

// pgMu runs the PostgreSQL tests of this package one at a time:
// pkg/migrate describes (Backup) and checks (Rollback) the schema of every
// schema in the database, so a test creating or changing its own schema
// meanwhile would fail another's rollback check. (For the same reason
// these tests and pkg/migrate's must not run at the same time on one
// database.)
var pgMu sync.Mutex

// withPostgres gives the site a schema of its own in the test database,
// which search_path points at, dropped at the test's end.
func withPostgres(t *testing.T, s *testSite) {
	t.Helper()
	dbtest.PostgresDSN(t) // skips before taking pgMu
	pgMu.Lock()
	t.Cleanup(pgMu.Unlock) // after the schema is dropped
	s.Database = &config.Database{Driver: "postgres", DSN: dbtest.PostgresSchema(t, "enginetest")}
}

// eachDB runs fn on a new site with each kind of database.
func eachDB(t *testing.T, fn func(t *testing.T, s *testSite)) {
	t.Helper()
	for _, kind := range []string{"sqlite", "postgres"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			s := newSite(t)
			if kind == "sqlite" {
				withSQLite(t, s)
			} else {
				withPostgres(t, s)
			}
			fn(t, s)
		})
	}
}

// sqlDB opens the site's database as the app would.
func (s *testSite) sqlDB(t *testing.T) *sql.DB {
	t.Helper()
	name := "pgx"
	if s.Database.Driver == "sqlite" {
		name = "sqlite"
	}
	db, err := sql.Open(name, s.Database.DSN)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// dbExec runs statements as the app.
func (s *testSite) dbExec(t *testing.T, stmts ...string) {
	t.Helper()
	db := s.sqlDB(t)
	defer db.Close()
	for _, q := range stmts {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// dbQuery returns the rows of query, columns joined by "|".
func (s *testSite) dbQuery(t *testing.T, query string) []string {
	t.Helper()
	db := s.sqlDB(t)
	defer db.Close()
	return dbtest.Rows(t, db, query)
}

// dbTables lists the user tables.
func (s *testSite) dbTables(t *testing.T) []string {
	t.Helper()
	if s.Database.Driver == "sqlite" {
		if _, err := os.Stat(s.Database.DSN); err != nil {
			return nil
		}
		return s.dbQuery(t, "SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
	}
	return s.dbQuery(t, "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename")
}

// dbRecords lists the migrations recorded, as name@release.
func (s *testSite) dbRecords(t *testing.T) []string {
	t.Helper()
	if !contains(s.dbTables(t), migrate.TableName) {
		return nil
	}
	return s.dbQuery(t, "SELECT name || '@' || release FROM "+migrate.TableName+" ORDER BY id")
}

// tryRecords is dbRecords for a database another process may be writing:
// nil on any error (locked, say).
func (s *testSite) tryRecords() []string {
	db, err := sql.Open("sqlite", s.Database.DSN)
	if err != nil {
		return nil
	}
	defer db.Close()
	rows, err := db.Query("SELECT name || '@' || release FROM " + migrate.TableName + " ORDER BY id")
	if err != nil {
		return nil
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var r string
		if rows.Scan(&r) != nil {
			return nil
		}
		out = append(out, r)
	}
	return out
}

// customers returns the customers table's rows.
func (s *testSite) customers(t *testing.T) []string {
	t.Helper()
	return s.dbQuery(t, "SELECT id, name, coalesce(email, '') FROM customers ORDER BY id")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// dbFingerprint hashes the database's schema and every row. SQLite:
// pkg/migrate's Fingerprint. PostgreSQL: the same idea restricted to the
// test's own schema, as Fingerprint covers every schema of the shared
// test database, which other tests (pkg/migrate's) change meanwhile.
func (s *testSite) dbFingerprint(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	if s.Database.Driver == "sqlite" {
		db, err := migrate.Open(ctx, s.Database.Driver, s.Database.DSN)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		fp, err := db.Fingerprint(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return fp
	}
	h := sha256.New()
	for _, q := range []string{
		`SELECT table_name, column_name, data_type, is_nullable, coalesce(column_default, '') FROM information_schema.columns WHERE table_schema = current_schema() ORDER BY 1, 2`,
		`SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() ORDER BY 1`,
		`SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE connamespace = current_schema()::regnamespace ORDER BY 1, 2`,
	} {
		for _, l := range s.dbQuery(t, q) {
			fmt.Fprintln(h, l)
		}
	}
	for _, table := range s.dbTables(t) {
		fmt.Fprintln(h, "table", table)
		for _, l := range s.dbQuery(t, `SELECT t::text FROM "`+table+`" t ORDER BY 1`) {
			fmt.Fprintln(h, l)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// backups lists the backup directories left in the data dir.
func (s *testSite) backups(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(s.DataDir, backupsDir))
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}
