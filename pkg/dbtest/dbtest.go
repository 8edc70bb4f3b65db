// Package dbtest gives tests real client databases: a PostgreSQL schema
// of the test's own in the database TEST_POSTGRES_DSN names (tests that
// need one are skipped when it is not set; `make test-postgres` sets it),
// and the rows of a query as strings, read as the managed app would. It
// is imported by tests only (repo_test.go checks).
package dbtest

import (
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"strings"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
)

// EnvPostgresDSN names the PostgreSQL database the tests may use, e.g.
// postgres://user:pass@127.0.0.1:5432/db?sslmode=disable.
const EnvPostgresDSN = "TEST_POSTGRES_DSN"

// PostgresDSN returns TEST_POSTGRES_DSN, or skips the test.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(EnvPostgresDSN)
	if dsn == "" {
		t.Skip(EnvPostgresDSN + " is not set: skipping the PostgreSQL tests " +
			"(set it to e.g. postgres://user:pass@127.0.0.1:5432/db?sslmode=disable to run them)")
	}
	return dsn
}

// PostgresSchema makes a schema of the test's own, named prefix and a
// random suffix, in the TEST_POSTGRES_DSN database (skipping the test
// when it is not set), drops it when the test ends, and returns a DSN
// whose search_path points at it.
func PostgresSchema(t testing.TB, prefix string) string {
	t.Helper()
	base := PostgresDSN(t)
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := prefix + "_" + hex.EncodeToString(b[:])
	db, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("CREATE SCHEMA " + schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		db, err := sql.Open("pgx", base)
		if err == nil {
			_, _ = db.Exec("DROP SCHEMA " + schema + " CASCADE")
			db.Close()
		}
	})
	if u, err := url.Parse(base); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		return u.String()
	}
	return base + " search_path=" + schema // key=value form
}

// Rows runs query on db and returns its rows, columns joined by "|",
// NULL as "NULL".
func Rows(t testing.TB, db *sql.DB, query string) []string {
	t.Helper()
	rows, err := db.Query(query)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var out []string
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		parts := make([]string, len(vals))
		for i, v := range vals {
			parts[i] = "NULL"
			if v.Valid {
				parts[i] = v.String
			}
		}
		out = append(out, strings.Join(parts, "|"))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
