package migrate

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// BenchmarkSQLiteBackupRestore measures, on a SQLite database of
// BENCH_DB_MB megabytes (default 1024) in WAL mode, the time an upgrade
// with one cheap migration spends in the backup and, when it fails, in
// the restore (DB.Backup and DB.Rollback, the calls the agent's engine
// makes in backing_up and rolling_back), against `cp` + fsync of the same
// file in the same run. Everything is flushed (`sync`) before each timed
// step, so that no step pays for another's writeback. Each iteration
// prints a RESULT line with the ratios; testenv/bench/backup.sh runs it.
//
//	BENCH_DB_MB=1024 go test -run '^$' -bench SQLiteBackupRestore -benchtime 1x ./pkg/migrate/
func BenchmarkSQLiteBackupRestore(b *testing.B) {
	mb := 1024
	if v, err := strconv.Atoi(os.Getenv("BENCH_DB_MB")); err == nil {
		mb = v
	}
	ctx := context.Background()
	dir := b.TempDir()
	if d := os.Getenv("BENCH_DIR"); d != "" {
		var err error
		if dir, err = os.MkdirTemp(d, "bench-backup"); err != nil {
			b.Fatal(err)
		}
		defer os.RemoveAll(dir)
	}
	path := filepath.Join(dir, "app.db")
	raw, err := sql.Open("sqlite", path)
	if err != nil {
		b.Fatal(err)
	}
	// Filled without a journal (nothing to recover here), then put in
	// WAL mode, as apps keep their databases.
	for _, s := range []string{"PRAGMA journal_mode=OFF", "PRAGMA synchronous=OFF", `CREATE TABLE docs (id INTEGER PRIMARY KEY, body BLOB)`} {
		if _, err := raw.Exec(s); err != nil {
			b.Fatal(err)
		}
	}
	tx, _ := raw.Begin()
	blob := make([]byte, 1<<20)
	rnd := rand.NewChaCha8([32]byte{1})
	for i := 0; i < mb; i++ {
		_, _ = rnd.Read(blob)
		if _, err := tx.Exec(`INSERT INTO docs (body) VALUES (?)`, blob); err != nil {
			b.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
	if _, err := raw.Exec("PRAGMA journal_mode=WAL"); err != nil {
		b.Fatal(err)
	}
	raw.Close()
	fi, _ := os.Stat(path)

	syncAll := func() {
		if err := exec.Command("sync").Run(); err != nil {
			b.Fatal(err)
		}
	}
	var backup, up, restore, cp time.Duration
	b.ResetTimer()
	for i := range b.N {
		syncAll()
		t0 := time.Now()
		cpPath := filepath.Join(dir, "copy.db")
		if out, err := exec.Command("cp", path, cpPath).CombinedOutput(); err != nil {
			b.Fatalf("cp: %v %s", err, out)
		}
		if out, err := exec.Command("sync", cpPath).CombinedOutput(); err != nil {
			b.Fatalf("sync: %v %s", err, out)
		}
		tcp := time.Since(t0)
		os.Remove(cpPath)

		db, err := Open(ctx, "sqlite", path)
		if err != nil {
			b.Fatal(err)
		}
		m, _ := NewMigration(fmt.Sprintf("%04d_cheap", i+1), `CREATE TABLE cheap (x INTEGER);`, ptr(`DROP TABLE cheap;`))
		plan, err := db.Plan(ctx, []Migration{m}, PlanOptions{})
		if err != nil {
			b.Fatal(err)
		}
		bdir := filepath.Join(dir, fmt.Sprintf("backup-%d", i))
		syncAll()
		t0 = time.Now()
		bk, err := db.Backup(ctx, bdir, plan)
		if err != nil {
			b.Fatal(err)
		}
		tb := time.Since(t0)
		t0 = time.Now()
		if err := db.Up(ctx, plan, bk, "bench"); err != nil {
			b.Fatal(err)
		}
		up += time.Since(t0)
		syncAll()
		t0 = time.Now()
		if err := db.Rollback(ctx, bk); err != nil {
			b.Fatal(err)
		}
		tr := time.Since(t0)
		db.Close()
		os.RemoveAll(bdir)
		cp += tcp
		backup += tb
		restore += tr
		fmt.Printf("RESULT sqlite-backup db_mb=%.0f cp_sync_s=%.2f backup_s=%.2f restore_s=%.2f backup_x_cp=%.2f restore_x_cp=%.2f\n",
			float64(fi.Size())/1e6, tcp.Seconds(), tb.Seconds(), tr.Seconds(), tb.Seconds()/tcp.Seconds(), tr.Seconds()/tcp.Seconds())
	}
	n := float64(b.N)
	b.ReportMetric(float64(fi.Size())/1e6, "MB-db")
	b.ReportMetric(cp.Seconds()/n, "s-cp")
	b.ReportMetric(backup.Seconds()/n, "s-backup")
	b.ReportMetric(up.Seconds()/n, "s-migrate")
	b.ReportMetric(restore.Seconds()/n, "s-restore")
	b.ReportMetric(backup.Seconds()/cp.Seconds(), "x-cp-backup")
	b.ReportMetric(restore.Seconds()/cp.Seconds(), "x-cp-restore")
}

func ptr(s string) *string { return &s }

// BenchmarkReadSchema measures what the agent's drift check (every 5
// minutes) spends reading the schema of a SQLite database of 200 tables
// of 10 columns and an index each.
//
//	go test -run '^$' -bench ReadSchema ./pkg/migrate/
func BenchmarkReadSchema(b *testing.B) {
	path := filepath.Join(b.TempDir(), "app.db")
	raw, err := sql.Open("sqlite", path)
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < 200; i++ {
		if _, err := raw.Exec(fmt.Sprintf(`CREATE TABLE t%d (id INTEGER PRIMARY KEY, c1 TEXT, c2 TEXT, c3 INTEGER, c4 REAL, c5 BLOB, c6 TEXT NOT NULL DEFAULT '', c7 INTEGER, c8 TEXT, c9 TEXT);
			CREATE INDEX t%d_c1 ON t%d (c1)`, i, i, i)); err != nil {
			b.Fatal(err)
		}
	}
	raw.Close()
	ctx := context.Background()
	for b.Loop() {
		objs, err := ReadSchema(ctx, "sqlite", path)
		if err != nil || len(objs) != 200*12 {
			b.Fatalf("ReadSchema: %d objects, %v", len(objs), err)
		}
	}
}
