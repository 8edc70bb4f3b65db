package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/store/storetest"
)

func TestRebind(t *testing.T) {
	for in, want := range map[string]string{
		`SELECT a FROM t WHERE b = ? AND c IN (?, ?)`:           `SELECT a FROM t WHERE b = $1 AND c IN ($2, $3)`,
		`SELECT '?', "col?" FROM t WHERE x = ? -- why?` + "\n?": `SELECT '?', "col?" FROM t WHERE x = $1 -- why?` + "\n$2",
		`SELECT 'it''s ?' WHERE a = ?`:                          `SELECT 'it''s ?' WHERE a = $1`,
		`CREATE TABLE t (a TEXT)`:                               `CREATE TABLE t (a TEXT)`,
	} {
		if got := rebind(in); got != want {
			t.Errorf("rebind(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestEveryMigrationHasAPostgresTwin: a migration appended to migrations
// (SQLite) without its twin in postgresMigrations would leave PostgreSQL
// stores behind; Open refuses them, and this test says so first.
func TestEveryMigrationHasAPostgresTwin(t *testing.T) {
	if got := postgresBase + len(postgresMigrations); got != len(migrations) {
		t.Fatalf("PostgreSQL reaches schema version %d, SQLite %d: append the PostgreSQL twin of each new migration to postgresMigrations (postgres_schema.go) and freeze it as testdata/pg-schema-N.sql", got, len(migrations))
	}
}

// pgCatalog describes the tables, columns, constraints and indexes of the
// schema db's connections use, in a stable text, to compare schemas.
func pgCatalog(t *testing.T, db *sql.DB) string {
	t.Helper()
	var b strings.Builder
	for _, q := range []string{
		`SELECT table_name || '.' || column_name || ' ' || data_type || ' null=' || is_nullable || ' default=' || COALESCE(column_default, '') ||
			' identity=' || is_identity || ' ' || COALESCE(identity_generation, '')
			FROM information_schema.columns WHERE table_schema = current_schema() ORDER BY table_name, column_name`,
		`SELECT conrelid::regclass::text || ' ' || pg_get_constraintdef(oid) FROM pg_constraint
			WHERE connamespace = current_schema()::regnamespace ORDER BY 1`,
		`SELECT replace(indexdef, current_schema() || '.', '') FROM pg_indexes WHERE schemaname = current_schema() ORDER BY indexname`,
	} {
		rows, err := db.Query(q)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			b.WriteString(s + "\n")
		}
		rows.Close()
	}
	return b.String()
}

// TestPostgresSchemaFrozen: every PostgreSQL schema released is frozen in
// testdata/pg-schema-N.sql (pg_dump --schema-only of a fresh init,
// cleaned: see README "PostgreSQL as the store"); a store made by each
// opens, migrates to the current version, and then has exactly the schema
// a fresh store has. The newest frozen file is the current schema, so
// editing postgresSchema instead of adding a migration fails here.
func TestPostgresSchemaFrozen(t *testing.T) {
	storetest.Schema(t) // skips without PostgreSQL
	fresh, _ := openTemp(t)
	want := pgCatalog(t, fresh.db)
	frozen, _ := filepath.Glob(filepath.Join("testdata", "pg-schema-*.sql"))
	newest := 0
	for _, f := range frozen {
		var v int
		if _, err := fmt.Sscanf(filepath.Base(f), "pg-schema-%d.sql", &v); err != nil {
			t.Fatal(err)
		}
		newest = max(newest, v)
		t.Run(filepath.Base(f), func(t *testing.T) {
			ddl, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			dsn := storetest.Schema(t)
			storetest.Exec(t, dsn, string(ddl)+fmt.Sprintf(";\nINSERT INTO schema_version (version) VALUES (%d)", v))
			s, err := Open(context.Background(), dsn)
			if err != nil {
				t.Fatalf("open a v%d PostgreSQL store: %v", v, err)
			}
			defer s.Close()
			if got := pgCatalog(t, s.db); got != want {
				t.Fatalf("a v%d store migrated differs from a fresh one:\n%s\nwant:\n%s", v, got, want)
			}
			var got int
			s.db.QueryRow(`SELECT version FROM schema_version`).Scan(&got)
			if got != SchemaVersion {
				t.Fatalf("schema_version %d, want %d", got, SchemaVersion)
			}
		})
	}
	if newest != SchemaVersion {
		t.Fatalf("newest frozen PostgreSQL schema is version %d, the code's %d: freeze it as testdata/pg-schema-%d.sql", newest, SchemaVersion, SchemaVersion)
	}
}

func TestPostgresNewerSchemaRefused(t *testing.T) {
	dsn := storetest.Schema(t)
	s, err := Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.Exec(`UPDATE schema_version SET version = 999`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err = Open(context.Background(), dsn); err == nil || !strings.Contains(err.Error(), "newer than this server knows") {
		t.Fatalf("err = %v", err)
	}
}

// TestConcurrentMetadataVersions: two stores on one database (two server
// replicas), many writers each publishing a release with the next targets
// metadata version it read: every version is saved exactly once (the
// loser of a race gets ErrConflict and tries the next), none is lost.
func TestConcurrentMetadataVersions(t *testing.T) {
	a, b := openTwo(t)
	ctx := context.Background()
	const n = 24
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		s := a
		if i%2 == 1 {
			s = b
		}
		wg.Go(func() {
			r := protocol.Release{Product: "p", Version: fmt.Sprintf("1.0.%d", i), Target: fmt.Sprintf("p/p-1.0.%d.tar.gz", i), SHA256: "ab", Length: 1,
				PublishedAt: time.Now(), PublishedBy: "t"}
			for {
				var next int64 = 1
				if m, err := s.LatestMetadata(ctx, "targets"); err == nil {
					next = m.Version + 1
				} else if !errors.Is(err, ErrNotFound) {
					errs <- err
					return
				}
				err := s.PublishRelease(ctx, Publish{Release: r, Metadata: []Metadata{{Role: "targets", Version: next, Data: []byte("{}")}}, Audit: Audit{Actor: "t", Action: "release.publish"}})
				if errors.Is(err, ErrConflict) {
					continue
				}
				errs <- err
				return
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	rows, err := a.db.Query(`SELECT version FROM tuf_metadata WHERE role = 'targets' ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []int64
	for rows.Next() {
		var v int64
		rows.Scan(&v)
		got = append(got, v)
	}
	if len(got) != n || got[0] != 1 || got[n-1] != n {
		t.Fatalf("targets versions %v, want 1..%d each once", got, n)
	}
	rels, err := a.ListReleases(ctx, ReleaseFilter{Product: "p"})
	if err != nil || len(rels) != n {
		t.Fatalf("%d releases (%v), want %d", len(rels), err, n)
	}
}
