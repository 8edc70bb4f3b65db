// Package storetest gives tests a fresh, empty store to open: a SQLite file
// in the test's temporary directory, or, when TEST_POSTGRES_DSN is set
// (make test-postgres, CI), a schema of its own in that PostgreSQL
// database, dropped when the test ends. The same tests thus run on both.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5"
)

// EnvDSN names the environment variable with the PostgreSQL database the
// tests may use (postgres://user:pass@127.0.0.1:5432/db?sslmode=disable).
const EnvDSN = "TEST_POSTGRES_DSN"

// Postgres reports whether the tests run their stores on PostgreSQL.
func Postgres() bool { return os.Getenv(EnvDSN) != "" }

// Path returns where a fresh store for t is: what store.Open takes. The
// same value opens the same store again (a restart).
func Path(t testing.TB) string {
	t.Helper()
	if !Postgres() {
		return filepath.Join(t.TempDir(), "s.db")
	}
	return Schema(t)
}

// Schema creates an empty schema for t in the TEST_POSTGRES_DSN database
// and returns a DSN whose connections use it (search_path), dropping the
// schema when t ends. It skips t when TEST_POSTGRES_DSN is unset.
func Schema(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(EnvDSN)
	if dsn == "" {
		t.Skip("set TEST_POSTGRES_DSN=postgres://user:pass@127.0.0.1:5432/db?sslmode=disable to run this test on PostgreSQL (make test-postgres)")
	}
	var b [6]byte
	rand.Read(b[:])
	schema := "t_" + hex.EncodeToString(b[:])
	exec(t, dsn, `CREATE SCHEMA `+schema)
	t.Cleanup(func() { exec(t, dsn, `DROP SCHEMA `+schema+` CASCADE`) })
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatalf("%s: %v", EnvDSN, err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// Exec runs SQL (e.g. a frozen schema) on the PostgreSQL database dsn names.
func Exec(t testing.TB, dsn, sql string) { t.Helper(); exec(t, dsn, sql) }

func exec(t testing.TB, dsn, sql string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect to %s: %v", EnvDSN, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}
