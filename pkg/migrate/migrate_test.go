package migrate

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// clientRows writes client data between releases: text with quotes and
// non-ASCII, NULLs.
var clientRows = []string{
	"INSERT INTO customers (id, name, email) VALUES (1, 'Ærøskøbing ''Bakery''', 'a@example.com')",
	"INSERT INTO customers (id, name, email) VALUES (2, 'no email', NULL)",
	"INSERT INTO customers (id, name, email) VALUES (3, 'three', '3@example.com')",
	"DELETE FROM customers WHERE id = 3",
}

const customersQuery = "SELECT id, name, email FROM customers ORDER BY id"

func TestFreshDatabaseAppliesAll(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg *target) {
		ctx := context.Background()
		fp0 := tg.fingerprint(t)
		db := tg.open(t)
		ms := load(t, release2)
		p, err := db.Plan(ctx, ms, PlanOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Applied) != 0 || len(p.Pending) != 4 || p.Empty() {
			t.Fatalf("plan: %d applied, %d pending", len(p.Applied), len(p.Pending))
		}
		// Plan touched nothing: no record table, no SQLite file.
		if tg.sqlitePath != "" {
			if _, err := os.Stat(tg.sqlitePath); !os.IsNotExist(err) {
				t.Fatalf("Plan created the database file: %v", err)
			}
		}
		if got := tg.fingerprint(t); got != fp0 {
			t.Fatal("Plan changed the database")
		}
		b, err := db.Backup(ctx, filepath.Join(t.TempDir(), "job1"), p)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Up(ctx, p, b, "2.0.0"); err != nil {
			t.Fatal(err)
		}
		want := []string{"0001_create_customers@2.0.0", "0002_add_email@2.0.0", "0003_orders@2.0.0", "0004_seed_vendor@2.0.0"}
		if got := recordIDs(t, db); !slices.Equal(got, want) {
			t.Fatalf("records %q, want %q", got, want)
		}
		recs, _, _ := db.records(ctx, db.pool)
		for i, r := range recs {
			if r.Checksum != ms[i].Checksum || !r.HasDown || r.AppliedAt.IsZero() {
				t.Errorf("record %+v", r)
			}
		}
		if got := tg.appQuery(t, customersQuery); !slices.Equal(got, []string{"1000|vendor|NULL"}) {
			t.Errorf("customers %q", got)
		}
		// Applying the same bundle again does nothing.
		p2, err := db.Plan(ctx, ms, PlanOptions{})
		if err != nil || !p2.Empty() {
			t.Fatalf("second plan: %v, %+v", err, p2)
		}
		// The first install rolls back to no database at all.
		if err := db.Rollback(ctx, b); err != nil {
			t.Fatal(err)
		}
		if got := tg.fingerprint(t); got != fp0 {
			t.Fatal("after Rollback the database differs from before the first install")
		}
		if tg.sqlitePath != "" {
			for _, suffix := range []string{"", "-wal", "-shm", "-journal"} {
				if _, err := os.Stat(tg.sqlitePath + suffix); !os.IsNotExist(err) {
					t.Errorf("%s still exists", tg.sqlitePath+suffix)
				}
			}
		}
	})
}

func TestSecondBundleAppliesOnlyNew(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg *target) {
		ctx := context.Background()
		db := tg.open(t)
		applyRelease(t, db, load(t, release1), "1.0.0")
		tg.appExec(t, clientRows...)
		p, err := db.Plan(ctx, load(t, release2), PlanOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var pending []string
		for _, m := range p.Pending {
			pending = append(pending, m.Name)
		}
		if !slices.Equal(pending, []string{"0003_orders", "0004_seed_vendor"}) || len(p.Applied) != 2 {
			t.Fatalf("pending %q, applied %d", pending, len(p.Applied))
		}
		b, err := db.Backup(ctx, filepath.Join(t.TempDir(), "job2"), p)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Up(ctx, p, b, "2.0.0"); err != nil {
			t.Fatal(err)
		}
		want := []string{"0001_create_customers@1.0.0", "0002_add_email@1.0.0", "0003_orders@2.0.0", "0004_seed_vendor@2.0.0"}
		if got := recordIDs(t, db); !slices.Equal(got, want) {
			t.Fatalf("records %q, want %q", got, want)
		}
	})
}

func TestClientRowsSurviveUpAndRollback(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg *target) {
		ctx := context.Background()
		db := tg.open(t)
		applyRelease(t, db, load(t, release1), "1.0.0")
		tg.appExec(t, clientRows...)
		rows0 := tg.appQuery(t, customersQuery)
		fp0 := tg.fingerprint(t)

		p, b := applyRelease(t, db, load(t, release2), "2.0.0")
		if len(p.Pending) != 2 {
			t.Fatalf("pending %d", len(p.Pending))
		}
		if got := tg.appQuery(t, customersQuery); len(got) != len(rows0)+1 {
			t.Fatalf("after Up: customers %q", got)
		}
		if tg.fingerprint(t) == fp0 {
			t.Fatal("Up did not change the fingerprint")
		}
		for i := range 2 { // Rollback is idempotent
			if err := db.Rollback(ctx, b); err != nil {
				t.Fatalf("Rollback #%d: %v", i+1, err)
			}
			if got := tg.fingerprint(t); got != fp0 {
				t.Fatalf("after Rollback #%d the fingerprint differs from before Up", i+1)
			}
		}
		if got := tg.appQuery(t, customersQuery); !slices.Equal(got, rows0) {
			t.Fatalf("customers %q, want %q", got, rows0)
		}
		if want := []string{"0001_create_customers@1.0.0", "0002_add_email@1.0.0"}; !slices.Equal(recordIDs(t, db), want) {
			t.Fatalf("records %q", recordIDs(t, db))
		}
		if tg.sqlitePath != "" && fileIsWAL(t, tg.sqlitePath) != tg.wal {
			t.Errorf("after rollback: WAL mode %v, want %v", !tg.wal, tg.wal)
		}
		// The database works on: the same release applies again.
		applyRelease(t, db, load(t, release2), "2.0.0")
	})
}

func TestDriftRefused(t *testing.T) {
	cases := []struct {
		name   string
		bundle map[string]string
		want   string
	}{
		{"checksum", merge(release2, map[string]string{"0002_add_email.up.sql": "ALTER TABLE customers ADD COLUMN email VARCHAR(200);\n"}),
			"0002_add_email was applied with checksum"},
		{"renamed", merge(without(release2, "0002_add_email.up.sql", "0002_add_email.down.sql"), map[string]string{
			"0002_add_mail.up.sql": release1["0002_add_email.up.sql"], "0002_add_mail.down.sql": release1["0002_add_email.down.sql"]}),
			"0002_add_email is recorded as applied but the bundle's migration 2 is 0002_add_mail"},
	}
	eachTarget(t, func(t *testing.T, tg *target) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				ctx := context.Background()
				db := tg.open(t)
				if len(recordIDs(t, db)) == 0 {
					applyRelease(t, db, load(t, release1), "1.0.0")
				}
				fp0 := tg.fingerprint(t)
				_, err := db.Plan(ctx, load(t, c.bundle), PlanOptions{AllowDowngrade: true, Irreversible: true, AllowIrreversible: true})
				if !errors.Is(err, ErrDrift) {
					t.Fatalf("Plan: %v, want ErrDrift", err)
				}
				if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "Nothing was changed") {
					t.Errorf("message %q does not say %q", err, c.want)
				}
				if tg.fingerprint(t) != fp0 {
					t.Fatal("the database changed")
				}
				if err := db.Down(ctx, load(t, c.bundle)[:2]); !errors.Is(err, ErrDrift) {
					t.Fatalf("Down: %v, want ErrDrift", err)
				}
			})
		}
	})
}

func TestBundleOlderThanDatabase(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg *target) {
		ctx := context.Background()
		db := tg.open(t)
		applyRelease(t, db, load(t, release2), "2.0.0")
		tg.appExec(t, "INSERT INTO customers (id, name) VALUES (1, 'client')")
		fp0 := tg.fingerprint(t)
		old := load(t, release1)
		_, err := db.Plan(ctx, old, PlanOptions{})
		if !errors.Is(err, ErrBundleOlder) || !strings.Contains(err.Error(), "0003_orders, 0004_seed_vendor") {
			t.Fatalf("Plan: %v, want ErrBundleOlder naming 0003 and 0004", err)
		}
		if tg.fingerprint(t) != fp0 {
			t.Fatal("the database changed")
		}
		// A downgrade plan takes them down, newest first.
		p, err := db.Plan(ctx, old, PlanOptions{AllowDowngrade: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Extra) != 2 || p.Extra[0].Name != "0004_seed_vendor" || len(p.Pending) != 0 {
			t.Fatalf("downgrade plan: %+v", p)
		}
		b, err := db.Backup(ctx, filepath.Join(t.TempDir(), "job"), p)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Up(ctx, p, b, "1.0.0"); err != nil {
			t.Fatal(err)
		}
		if want := []string{"0001_create_customers@2.0.0", "0002_add_email@2.0.0"}; !slices.Equal(recordIDs(t, db), want) {
			t.Fatalf("records %q", recordIDs(t, db))
		}
		if got := tg.tables(t); slices.Contains(got, "orders") {
			t.Fatalf("tables %q", got)
		}
		err = db.Rollback(ctx, b)
		if tg.driver == "postgres" {
			// The down migrations of a downgrade cannot be undone.
			if !errors.Is(err, ErrIrreversible) {
				t.Fatalf("Rollback of a downgrade: %v, want ErrIrreversible", err)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if tg.fingerprint(t) != fp0 {
			t.Fatal("Rollback of the downgrade did not restore the database")
		}
	})
}

func TestMissingDownMigration(t *testing.T) {
	bundle := without(release2, "0003_orders.down.sql")
	cases := []struct {
		name string
		opts PlanOptions
		want string // "" = allowed
	}{
		{"refused", PlanOptions{}, "no 0003_orders.down.sql"},
		{"allow flag alone", PlanOptions{AllowIrreversible: true}, "mark the bundle irreversible"},
		{"marked, not allowed", PlanOptions{Irreversible: true}, "explicit permission"},
		{"marked and allowed", PlanOptions{Irreversible: true, AllowIrreversible: true}, ""},
	}
	eachTarget(t, func(t *testing.T, tg *target) {
		ctx := context.Background()
		db := tg.open(t)
		applyRelease(t, db, load(t, release1), "1.0.0")
		tg.appExec(t, clientRows...)
		fp0 := tg.fingerprint(t)
		ms := load(t, bundle)
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				p, err := db.Plan(ctx, ms, c.opts)
				if c.want != "" {
					if !errors.Is(err, ErrIrreversible) || !strings.Contains(err.Error(), c.want) {
						t.Fatalf("Plan: %v, want ErrIrreversible saying %q", err, c.want)
					}
					return
				}
				if err != nil || !p.Irreversible {
					t.Fatalf("Plan: %v, %+v", err, p)
				}
				b, err := db.Backup(ctx, filepath.Join(t.TempDir(), "job"), p)
				if err != nil {
					t.Fatal(err)
				}
				if err := db.Up(ctx, p, b, "2.0.0"); err != nil {
					t.Fatal(err)
				}
				err = db.Rollback(ctx, b)
				if tg.driver == "postgres" {
					// Committed without a down migration: nothing to run,
					// nothing touched.
					if !errors.Is(err, ErrIrreversible) || !strings.Contains(err.Error(), "0003_orders") {
						t.Fatalf("Rollback: %v, want ErrIrreversible naming 0003_orders", err)
					}
					if len(recordIDs(t, db)) != 4 {
						t.Fatal("Rollback touched the database")
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if tg.fingerprint(t) != fp0 {
					t.Fatal("SQLite restore of an irreversible job differs")
				}
			})
		}
	})
}

func TestSQLErrorHalfway(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg *target) {
		ctx := context.Background()
		db := tg.open(t)
		applyRelease(t, db, load(t, release1), "1.0.0")
		tg.appExec(t, clientRows...)
		fp0 := tg.fingerprint(t)
		p, err := db.Plan(ctx, load(t, merge(release2, badMigration)), PlanOptions{})
		if err != nil {
			t.Fatal(err)
		}
		b, err := db.Backup(ctx, filepath.Join(t.TempDir(), "job"), p)
		if err != nil {
			t.Fatal(err)
		}
		err = db.Up(ctx, p, b, "2.0.0")
		var me *MigrationError
		if !errors.Is(err, ErrMigration) || !errors.As(err, &me) || me.File != "0005_bad.up.sql" ||
			!strings.Contains(err.Error(), "0005_bad.up.sql") || !strings.Contains(err.Error(), "no_such_table") {
			t.Fatalf("Up: %v, want a MigrationError naming 0005_bad.up.sql", err)
		}
		t.Logf("Up: %v", err)
		if tg.driver == "postgres" {
			if me.Line != 2 || me.Column != 13 {
				t.Errorf("position %d:%d, want 2:13", me.Line, me.Column)
			}
			// One transaction: nothing of the job is left.
			if tg.fingerprint(t) != fp0 {
				t.Fatal("the failed transaction left changes")
			}
		}
		for i := range 2 {
			if err := db.Rollback(ctx, b); err != nil {
				t.Fatalf("Rollback #%d: %v", i+1, err)
			}
			if tg.fingerprint(t) != fp0 {
				t.Fatalf("after Rollback #%d the database differs from the backup", i+1)
			}
		}
	})
}

func TestRollbackWithoutUp(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg *target) {
		ctx := context.Background()
		db := tg.open(t)
		applyRelease(t, db, load(t, release1), "1.0.0")
		tg.appExec(t, clientRows...)
		fp0 := tg.fingerprint(t)
		p, err := db.Plan(ctx, load(t, release2), PlanOptions{})
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(t.TempDir(), "job")
		if _, err := OpenBackup(dir); !errors.Is(err, ErrNoBackup) {
			t.Fatalf("OpenBackup before Backup: %v, want ErrNoBackup", err)
		}
		if _, err := db.Backup(ctx, dir, p); err != nil {
			t.Fatal(err)
		}
		b, err := OpenBackup(dir)
		if err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if err := db.Rollback(ctx, b); err != nil {
				t.Fatal(err)
			}
		}
		if tg.fingerprint(t) != fp0 {
			t.Fatal("Rollback without Up changed the database")
		}
	})
}

// TestRollbackAfterRestart: Up stopped partway (a failing migration after
// committed ones on SQLite), and the rollback runs in a "new process": a
// new DB and the backup reloaded from its directory.
func TestRollbackAfterRestart(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg *target) {
		ctx := context.Background()
		db := tg.open(t)
		applyRelease(t, db, load(t, release1), "1.0.0")
		tg.appExec(t, clientRows...)
		fp0 := tg.fingerprint(t)
		p, err := db.Plan(ctx, load(t, merge(release2, badMigration)), PlanOptions{})
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(t.TempDir(), "job")
		b, err := db.Backup(ctx, dir, p)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Up(ctx, p, b, "2.0.0"); err == nil {
			t.Fatal("Up succeeded")
		}
		if tg.driver == "sqlite" && len(recordIDs(t, db)) != 4 {
			t.Fatalf("expected 0003 and 0004 committed before 0005 failed: %q", recordIDs(t, db))
		}
		db.Close()

		db2 := tg.open(t)
		b2, err := OpenBackup(dir)
		if err != nil {
			t.Fatal(err)
		}
		if err := db2.Rollback(ctx, b2); err != nil {
			t.Fatal(err)
		}
		if tg.fingerprint(t) != fp0 {
			t.Fatal("the database differs from the backup")
		}
	})
}

func TestStalePlanRefused(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg *target) {
		ctx := context.Background()
		db := tg.open(t)
		applyRelease(t, db, load(t, release1), "1.0.0")
		p, err := db.Plan(ctx, load(t, release2), PlanOptions{})
		if err != nil {
			t.Fatal(err)
		}
		b, err := db.Backup(ctx, filepath.Join(t.TempDir(), "job"), p)
		if err != nil {
			t.Fatal(err)
		}
		// Someone else applies 0003 meanwhile.
		other := tg.open(t)
		applyRelease(t, other, load(t, without(release2, "0004_seed_vendor.up.sql", "0004_seed_vendor.down.sql")), "1.5.0")
		fp := tg.fingerprint(t)
		if err := db.Up(ctx, p, b, "2.0.0"); !errors.Is(err, ErrStale) {
			t.Fatalf("Up: %v, want ErrStale", err)
		}
		if _, err := db.Backup(ctx, filepath.Join(t.TempDir(), "job2"), p); !errors.Is(err, ErrStale) {
			t.Fatalf("Backup: %v, want ErrStale", err)
		}
		if tg.fingerprint(t) != fp {
			t.Fatal("the database changed")
		}
		// A backup of another plan is refused too.
		p2, err := db.Plan(ctx, load(t, release2), PlanOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Up(ctx, p2, b, "2.0.0"); !errors.Is(err, ErrStale) {
			t.Fatalf("Up with another plan's backup: %v, want ErrStale", err)
		}
		if err := db.Up(ctx, p2, nil, "2.0.0"); !errors.Is(err, ErrNoBackup) {
			t.Fatalf("Up without a backup: %v, want ErrNoBackup", err)
		}
	})
}

func TestDown(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg *target) {
		ctx := context.Background()
		db := tg.open(t)
		applyRelease(t, db, load(t, release1), "1.0.0")
		tg.appExec(t, clientRows...)
		fp1 := tg.fingerprint(t)
		applyRelease(t, db, load(t, release2), "2.0.0")
		// Down to a set the database lacks part of: refused.
		if err := db.Down(ctx, load(t, merge(release1, badMigration))); !errors.Is(err, ErrStale) {
			t.Fatalf("Down: %v, want ErrStale", err)
		}
		// Down to release 1 with its own (older) bundle: the down SQL of
		// 0003 and 0004 comes from the records.
		if err := db.Down(ctx, load(t, release1)); err != nil {
			t.Fatal(err)
		}
		if want := []string{"0001_create_customers@1.0.0", "0002_add_email@1.0.0"}; !slices.Equal(recordIDs(t, db), want) {
			t.Fatalf("records %q", recordIDs(t, db))
		}
		if tg.driver == "postgres" {
			// Down migrations restore PostgreSQL's schema and rows exactly.
			if tg.fingerprint(t) != fp1 {
				t.Fatal("Down did not restore release 1")
			}
		}
		if err := db.Down(ctx, load(t, release1)); err != nil { // nothing left to do
			t.Fatal(err)
		}
	})
}

// TestMigrationEndsTransaction: a migration with COMMIT is caught.
func TestMigrationEndsTransaction(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg *target) {
		ctx := context.Background()
		db := tg.open(t)
		applyRelease(t, db, load(t, release1), "1.0.0")
		fp0 := tg.fingerprint(t)
		ms := load(t, merge(release1, map[string]string{
			"0003_commits.up.sql":   "CREATE TABLE t3 (id INTEGER);\nCOMMIT;\n",
			"0003_commits.down.sql": "DROP TABLE t3;\n",
		}))
		p, err := db.Plan(ctx, ms, PlanOptions{})
		if err != nil {
			t.Fatal(err)
		}
		b, err := db.Backup(ctx, filepath.Join(t.TempDir(), "job"), p)
		if err != nil {
			t.Fatal(err)
		}
		err = db.Up(ctx, p, b, "2.0.0")
		if err == nil || !strings.Contains(err.Error(), "COMMIT") {
			t.Fatalf("Up: %v, want an error about the migration's COMMIT", err)
		}
		t.Logf("Up: %v", err)
		if tg.driver == "sqlite" {
			if err := db.Rollback(ctx, b); err != nil {
				t.Fatal(err)
			}
			if tg.fingerprint(t) != fp0 {
				t.Fatal("the restore differs")
			}
		}
	})
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	if _, err := Open(ctx, "mssql", "x"); !errors.Is(err, ErrUnsupported) {
		t.Errorf("unknown driver: %v", err)
	}
	if _, err := Open(ctx, "sqlite", ":memory:"); !errors.Is(err, ErrUnsupported) {
		t.Errorf(":memory: %v", err)
	}
	if _, err := Open(ctx, "sqlite", "file:x.db?mode=memory"); !errors.Is(err, ErrUnsupported) {
		t.Errorf("mode=memory: %v", err)
	}
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, "sqlite", filepath.Join(file, "app.db")); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("a database under a file: %v", err)
	}
	notDB := filepath.Join(t.TempDir(), "not.db")
	if err := os.WriteFile(notDB, []byte("this is not a database, just some text long enough to fill a header"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, "sqlite", notDB); err == nil {
		t.Error("a text file opened as a database")
	}
}

func TestSQLitePath(t *testing.T) {
	abs := func(p string) string { a, _ := filepath.Abs(p); return a }
	cases := map[string]string{
		"/var/lib/app/app.db":                         "/var/lib/app/app.db",
		"/var/lib/app/app.db?_pragma=foreign_keys(1)": "/var/lib/app/app.db",
		"file:/var/lib/app/app.db?cache=shared":       "/var/lib/app/app.db",
		"file:///var/lib/app/my%20app.db":             "/var/lib/app/my app.db",
		"data/app.db":                                 abs("data/app.db"),
		"file:data/app.db":                            abs("data/app.db"),
	}
	for dsn, want := range cases {
		got, err := sqlitePath(dsn)
		if err != nil || got != filepath.FromSlash(want) {
			t.Errorf("sqlitePath(%q) = %q, %v; want %q", dsn, got, err, want)
		}
	}
}

func TestDiffLines(t *testing.T) {
	got := diffLines([]string{"a", "b", "d"}, []string{"b", "c", "d", "e"})
	if want := []string{"-a", "+c", "+e"}; !slices.Equal(got, want) {
		t.Errorf("diffLines = %q, want %q", got, want)
	}
}

// TestSQLiteDamagedOrMissingFile: Rollback restores a live file that was
// damaged or removed after Up.
func TestSQLiteDamagedOrMissingFile(t *testing.T) {
	for _, wal := range []bool{false, true} {
		for _, damage := range []string{"garbage", "removed"} {
			t.Run(fmt.Sprintf("%s/wal=%v", damage, wal), func(t *testing.T) {
				ctx := context.Background()
				tg := newSQLiteTarget(t, wal)
				db := tg.open(t)
				applyRelease(t, db, load(t, release1), "1.0.0")
				tg.appExec(t, clientRows...)
				fp0 := tg.fingerprint(t)
				mode, _ := os.Stat(tg.sqlitePath)
				_, b := applyRelease(t, db, load(t, release2), "2.0.0")
				switch damage {
				case "garbage":
					if err := os.WriteFile(tg.sqlitePath, bytes.Repeat([]byte("garbage!"), 1024), 0o600); err != nil {
						t.Fatal(err)
					}
				case "removed":
					for _, suffix := range []string{"", "-wal", "-shm"} {
						os.Remove(tg.sqlitePath + suffix)
					}
				}
				if err := db.Rollback(ctx, b); err != nil {
					t.Fatal(err)
				}
				if tg.fingerprint(t) != fp0 {
					t.Fatal("the restored database differs")
				}
				fi, err := os.Stat(tg.sqlitePath)
				if err != nil {
					t.Fatal(err)
				}
				if damage == "garbage" && fi.Mode() != mode.Mode() {
					t.Errorf("mode %v, want %v", fi.Mode(), mode.Mode())
				}
				if fileIsWAL(t, tg.sqlitePath) != wal {
					t.Errorf("WAL mode %v, want %v", !wal, wal)
				}
			})
		}
	}
}

// TestSQLiteDamagedBackupRefused: a backup copy damaged on disk is not
// restored.
func TestSQLiteDamagedBackupRefused(t *testing.T) {
	ctx := context.Background()
	tg := newSQLiteTarget(t, false)
	db := tg.open(t)
	applyRelease(t, db, load(t, release1), "1.0.0")
	tg.appExec(t, clientRows...)
	_, b := applyRelease(t, db, load(t, release2), "2.0.0")
	// Change a row in the copy, keeping it a valid database.
	cp, err := sql.Open("sqlite", filepath.Join(b.Dir(), sqliteCopy))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cp.Exec("UPDATE customers SET name = 'tampered' WHERE id = 1"); err != nil {
		t.Fatal(err)
	}
	cp.Close()
	fp := tg.fingerprint(t)
	if err := db.Rollback(ctx, b); !errors.Is(err, ErrVerify) || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("Rollback: %v, want ErrVerify (damaged backup)", err)
	}
	if tg.fingerprint(t) != fp {
		t.Fatal("Rollback changed the database")
	}
}

// TestRollbackChecksSchema: a down migration that leaves something behind
// (an index) is reported on PostgreSQL; SQLite restores the copy anyway.
func TestRollbackChecksSchema(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg *target) {
		ctx := context.Background()
		db := tg.open(t)
		applyRelease(t, db, load(t, release1), "1.0.0")
		tg.appExec(t, clientRows...)
		fp0 := tg.fingerprint(t)
		_, b := applyRelease(t, db, load(t, merge(release1, map[string]string{
			"0003_phone.up.sql":   "ALTER TABLE customers ADD COLUMN phone TEXT;\nCREATE INDEX customers_name ON customers (name);\n",
			"0003_phone.down.sql": "ALTER TABLE customers DROP COLUMN phone;\n",
		})), "2.0.0")
		err := db.Rollback(ctx, b)
		if tg.driver == "sqlite" {
			if err != nil || tg.fingerprint(t) != fp0 {
				t.Fatalf("Rollback: %v (or the fingerprint differs)", err)
			}
			return
		}
		if !errors.Is(err, ErrVerify) || !strings.Contains(err.Error(), "customers_name") {
			t.Fatalf("Rollback: %v, want ErrVerify naming customers_name", err)
		}
		t.Logf("Rollback: %v", err)
		if want := []string{"0001_create_customers@1.0.0", "0002_add_email@1.0.0"}; !slices.Equal(recordIDs(t, db), want) {
			t.Fatalf("records %q", recordIDs(t, db))
		}
	})
}

// TestFingerprint: the fingerprint sees rows, values, schema and SQLite's
// user_version, and ignores physical layout (VACUUM).
func TestFingerprint(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg *target) {
		db := tg.open(t)
		applyRelease(t, db, load(t, release2), "2.0.0")
		tg.appExec(t, clientRows...)
		fp := tg.fingerprint(t)
		if tg.fingerprint(t) != fp {
			t.Fatal("fingerprint not stable")
		}
		changes := [][2]string{ // change, undo
			{"UPDATE customers SET name = 'x' WHERE id = 1", "UPDATE customers SET name = 'Ærøskøbing ''Bakery''' WHERE id = 1"},
			{"UPDATE customers SET email = NULL WHERE id = 1", "UPDATE customers SET email = 'a@example.com' WHERE id = 1"},
			{"INSERT INTO customers (id, name) VALUES (77, 'new')", "DELETE FROM customers WHERE id = 77"},
			{"CREATE INDEX customers_email ON customers (email)", "DROP INDEX customers_email"},
			{"CREATE TABLE empty_one (id INTEGER)", "DROP TABLE empty_one"},
		}
		if tg.driver == "sqlite" {
			changes = append(changes, [2]string{"PRAGMA user_version = 5", "PRAGMA user_version = 0"})
		}
		for _, c := range changes {
			tg.appExec(t, c[0])
			if tg.fingerprint(t) == fp {
				t.Errorf("%s: fingerprint unchanged", c[0])
			}
			tg.appExec(t, c[1])
			if tg.fingerprint(t) != fp {
				t.Errorf("%s: fingerprint not back after %s", c[0], c[1])
			}
		}
		tg.appExec(t, "VACUUM")
		if tg.fingerprint(t) != fp {
			t.Error("VACUUM changed the fingerprint")
		}
	})
}

func TestBackupSize(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg *target) {
		db := tg.open(t)
		if n, err := db.BackupSize(); err != nil || n != 0 {
			t.Fatalf("fresh: %d, %v", n, err)
		}
		applyRelease(t, db, load(t, release2), "2.0.0")
		n, err := db.BackupSize()
		if err != nil {
			t.Fatal(err)
		}
		if tg.driver == "sqlite" && n == 0 || tg.driver == "postgres" && n != 0 {
			t.Fatalf("BackupSize = %d", n)
		}
	})
}

// TestNoopMigrations: empty and comment-only migrations apply and roll
// back.
func TestNoopMigrations(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg *target) {
		ctx := context.Background()
		db := tg.open(t)
		applyRelease(t, db, load(t, release1), "1.0.0")
		fp0 := tg.fingerprint(t)
		_, b := applyRelease(t, db, load(t, merge(release1, map[string]string{
			"0003_empty.up.sql":     "",
			"0003_empty.down.sql":   "",
			"0004_comment.up.sql":   "-- nothing to do here\n/* really */\n",
			"0004_comment.down.sql": "   \n",
		})), "2.0.0")
		if len(recordIDs(t, db)) != 4 {
			t.Fatalf("records %q", recordIDs(t, db))
		}
		if err := db.Rollback(ctx, b); err != nil {
			t.Fatal(err)
		}
		if tg.fingerprint(t) != fp0 {
			t.Fatal("the database differs after Rollback")
		}
	})
}

// TestSQLiteMissingDirectory: the first install of an app whose database
// directory does not exist yet (the app would create it) works: Plan and
// Backup create nothing, Up creates the directories, and the rollback
// removes the database and the directories again.
func TestSQLiteMissingDirectory(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	path := filepath.Join(root, "pb_data", "db", "app.db")
	db, err := Open(ctx, "sqlite", path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer db.Close()
	p, err := db.Plan(ctx, load(t, release1), PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := db.Backup(ctx, filepath.Join(t.TempDir(), "job"), p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "pb_data")); !os.IsNotExist(err) {
		t.Fatalf("Plan or Backup created the directory: %v", err)
	}
	if err := db.Up(ctx, p, b, "1.0.0"); err != nil {
		t.Fatalf("Up: %v", err)
	}
	if got := recordIDs(t, db); len(got) == 0 {
		t.Fatal("no migrations recorded")
	}
	b, err = OpenBackup(b.Dir()) // as a new process would
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Rollback(ctx, b); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "pb_data")); !os.IsNotExist(err) {
		t.Errorf("after the rollback pb_data is still there: %v", err)
	}
}
