// Package storetest gives tests a fresh, empty store to open: a SQLite file
// in the test's temporary directory, or, when TEST_POSTGRES_DSN is set
// (make test-postgres, CI), a schema of its own in that PostgreSQL
// database (dbtest), dropped when the test ends. The same tests thus run
// on both.
package storetest

import (
	"database/sql"
	"os"
	"path/filepath"
	"testing"

	"github.com/dropless/dropless/pkg/dbtest"
)

// Postgres reports whether the tests run their stores on PostgreSQL.
func Postgres() bool { return os.Getenv(dbtest.EnvPostgresDSN) != "" }

// Path returns where a fresh store for t is: what store.Open takes. The
// same value opens the same store again (a restart, a second replica).
func Path(t testing.TB) string {
	t.Helper()
	if !Postgres() {
		return filepath.Join(t.TempDir(), "s.db")
	}
	return Schema(t)
}

// Schema returns a postgres:// URL of an empty schema of t's own (the
// test is skipped without TEST_POSTGRES_DSN).
func Schema(t testing.TB) string {
	t.Helper()
	return dbtest.PostgresSchema(t, "store")
}

// Exec runs SQL (e.g. a frozen schema) on the PostgreSQL database dsn
// names.
func Exec(t testing.TB, dsn, query string) {
	t.Helper()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(query); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}
