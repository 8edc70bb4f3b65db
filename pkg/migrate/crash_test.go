package migrate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
)

// crashExit is the exit code of the crash helper when it crashed on cue.
const crashExit = 3

func TestMain(m *testing.M) {
	if os.Getenv("MIGRATE_CRASH_MODE") != "" {
		os.Exit(crashHelper())
	}
	os.Exit(m.Run())
}

// crashHelper runs in a child process: Plan, Backup and Up (mode "up"),
// or Rollback (mode "rollback"), exiting without any cleanup at the
// point MIGRATE_CRASH_AT, like a kill -9 or a power cut.
func crashHelper() int {
	ctx := context.Background()
	at := os.Getenv("MIGRATE_CRASH_AT")
	testHook = func(point string) {
		if point == at {
			os.Exit(crashExit)
		}
	}
	db, err := Open(ctx, os.Getenv("MIGRATE_CRASH_DRIVER"), os.Getenv("MIGRATE_CRASH_DSN"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	dir := os.Getenv("MIGRATE_CRASH_BACKUP")
	switch os.Getenv("MIGRATE_CRASH_MODE") {
	case "up":
		ms, err := Load(os.Getenv("MIGRATE_CRASH_MIGRATIONS"))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		p, err := db.Plan(ctx, ms, PlanOptions{})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		b, err := db.Backup(ctx, dir, p)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		err = db.Up(ctx, p, b, "2.0.0")
		fmt.Fprintln(os.Stderr, "Up returned:", err)
	case "appwrite":
		// The app writes in WAL mode and dies: its rows are only in -wal.
		app, err := sql.Open("sqlite", os.Getenv("MIGRATE_CRASH_DSN"))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		for _, s := range append([]string{"PRAGMA journal_mode=WAL", "PRAGMA wal_autocheckpoint=0"}, clientRows...) {
			if _, err := app.Exec(s); err != nil {
				fmt.Fprintln(os.Stderr, s, err)
				return 1
			}
		}
		os.Exit(crashExit)
	case "rollback":
		b, err := OpenBackup(dir)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		err = db.Rollback(ctx, b)
		fmt.Fprintln(os.Stderr, "Rollback returned:", err)
	}
	return 4 // did not crash
}

func runCrashHelper(t *testing.T, tg *target, mode, at, migrations, backup string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(),
		"MIGRATE_CRASH_MODE="+mode, "MIGRATE_CRASH_AT="+at,
		"MIGRATE_CRASH_DRIVER="+tg.driver, "MIGRATE_CRASH_DSN="+tg.dsn,
		"MIGRATE_CRASH_MIGRATIONS="+migrations, "MIGRATE_CRASH_BACKUP="+backup)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != crashExit {
		t.Fatalf("crash helper (%s at %s): %v, want exit %d\n%s", mode, at, err, crashExit, out)
	}
}

// TestCrashDuringUp kills a process in the middle of Up (SQLite: after
// 0003 committed, inside 0004's transaction; PostgreSQL: inside the job's
// transaction), then rolls back from a new process's view.
func TestCrashDuringUp(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg *target) {
		ctx := context.Background()
		db := tg.open(t)
		applyRelease(t, db, load(t, release1), "1.0.0")
		tg.appExec(t, clientRows...)
		fp0 := tg.fingerprint(t)
		dir := filepath.Join(t.TempDir(), "backups", "job")
		runCrashHelper(t, tg, "up", "0004_seed_vendor.up.sql", writeMigrations(t, release2), dir)

		db2 := tg.open(t)
		recs := recordIDs(t, db2)
		want := []string{"0001_create_customers@1.0.0", "0002_add_email@1.0.0"}
		if tg.driver == "sqlite" {
			want = append(want, "0003_orders@2.0.0") // committed before the crash
		}
		if !slices.Equal(recs, want) {
			t.Fatalf("after the crash: records %q, want %q", recs, want)
		}
		b, err := OpenBackup(dir)
		if err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if err := db2.Rollback(ctx, b); err != nil {
				t.Fatal(err)
			}
			if tg.fingerprint(t) != fp0 {
				t.Fatal("after Rollback the database differs from before the job")
			}
		}
	})
}

// TestCrashDuringRollback kills a process in the middle of Rollback
// (SQLite: after the restore, before its check; PostgreSQL: inside the
// rollback's transaction, after a down migration), then rolls back again.
func TestCrashDuringRollback(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg *target) {
		ctx := context.Background()
		db := tg.open(t)
		applyRelease(t, db, load(t, release1), "1.0.0")
		tg.appExec(t, clientRows...)
		fp0 := tg.fingerprint(t)
		_, b := applyRelease(t, db, load(t, release2), "2.0.0")
		at := "0004_seed_vendor.down.sql"
		if tg.driver == "sqlite" {
			at = "restore"
		}
		runCrashHelper(t, tg, "rollback", at, "", b.Dir())
		if err := tg.open(t).Rollback(ctx, b); err != nil {
			t.Fatal(err)
		}
		if tg.fingerprint(t) != fp0 {
			t.Fatal("after Rollback the database differs from before the job")
		}
	})
}

// TestSQLiteWALLeftByCrashedApp: the app died with committed rows only in
// its -wal file. Backup must include them, Rollback must restore them.
func TestSQLiteWALLeftByCrashedApp(t *testing.T) {
	ctx := context.Background()
	tg := newSQLiteTarget(t, true)
	db := tg.open(t)
	applyRelease(t, db, load(t, release1), "1.0.0")
	db.Close()
	runCrashHelper(t, tg, "appwrite", "", "", "")
	if fi, err := os.Stat(tg.sqlitePath + "-wal"); err != nil || fi.Size() == 0 {
		t.Fatalf("the crashed app left no -wal: %v", err)
	}
	// The expected state, from a copy of the files (opening the database
	// itself would checkpoint the WAL on close).
	cp := &target{driver: "sqlite", sqlitePath: filepath.Join(t.TempDir(), "copy.db")}
	cp.dsn = cp.sqlitePath
	for _, suffix := range []string{"", "-wal"} {
		data, err := os.ReadFile(tg.sqlitePath + suffix)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(cp.sqlitePath+suffix, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	fp0 := cp.fingerprint(t)
	rows0 := cp.appQuery(t, customersQuery)
	if len(rows0) != 2 {
		t.Fatalf("customers %q", rows0)
	}

	db = tg.open(t)
	_, b := applyRelease(t, db, load(t, release2), "2.0.0")
	if err := db.Rollback(ctx, b); err != nil {
		t.Fatal(err)
	}
	if tg.fingerprint(t) != fp0 {
		t.Fatal("after Rollback the database differs from before the job")
	}
	if got := tg.appQuery(t, customersQuery); !slices.Equal(got, rows0) {
		t.Fatalf("customers %q, want %q", got, rows0)
	}
}
