package dbtest

import (
	"database/sql"
	"slices"
	"testing"
)

// A schema of the test's own: what the test creates lands there, and
// the rows come back as strings.
func TestPostgresSchema(t *testing.T) {
	dsn := PostgresSchema(t, "dbtest")
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("CREATE TABLE t (a int, b text); INSERT INTO t VALUES (1, 'x'), (2, NULL)"); err != nil {
		t.Fatal(err)
	}
	if got := Rows(t, db, "SELECT a, b FROM t ORDER BY a"); !slices.Equal(got, []string{"1|x", "2|NULL"}) {
		t.Errorf("Rows = %q", got)
	}
	var schema string
	if err := db.QueryRow("SELECT current_schema()").Scan(&schema); err != nil || len(schema) < len("dbtest_") || schema[:7] != "dbtest_" {
		t.Errorf("current_schema() = %q, %v; want dbtest_...", schema, err)
	}
}
