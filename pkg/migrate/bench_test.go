package migrate

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"
)

// BenchmarkSQLiteBackupRestore measures, on a SQLite database of
// BENCH_DB_MB megabytes (default 1024) in WAL mode, the time an upgrade
// with one cheap migration spends in the backup and, when it fails, in
// the restore (DB.Backup and DB.Rollback, the calls the agent's engine
// makes in backing_up and rolling_back), against `cp` + fsync of the same
// file in the same run, and the CPU time each spends (this process's for
// backup and restore, cp's for cp: CPU is what the steps compete for on a
// busy machine, where the disk's speed drifts too). Everything is flushed
// (`sync`) before each timed step, so that no step pays for another's
// writeback, and the file it copies read into the page cache; a cp of the
// same file is timed before each backup and each restore.
// BENCH_RUNS (default 1) runs, each printed, then a RESULT line with the
// medians and their ratios; testenv/bench/backup.sh runs it.
//
//	BENCH_DB_MB=1024 BENCH_RUNS=3 go test -run '^$' -bench SQLiteBackupRestore -benchtime 1x ./pkg/migrate/
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
	// warm reads a file into the page cache, where an app's database is
	// when the app has just been stopped: on a busy machine the cache
	// drops a file within a minute, and a step whose source was dropped
	// would be compared with a cp whose source was not, or the reverse.
	warm := func(p string) {
		f, err := os.Open(p)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		if _, err := io.CopyBuffer(io.Discard, f, make([]byte, 4<<20)); err != nil {
			b.Fatal(err)
		}
	}
	// cpSync times cp + fsync of src, warm, after a sync.
	cpSync := func(src string) (time.Duration, float64) {
		syncAll()
		warm(src)
		cpPath := filepath.Join(dir, "copy.db")
		c0 := childrenCPU()
		t0 := time.Now()
		if out, err := exec.Command("cp", src, cpPath).CombinedOutput(); err != nil {
			b.Fatalf("cp: %v %s", err, out)
		}
		if out, err := exec.Command("sync", cpPath).CombinedOutput(); err != nil {
			b.Fatalf("sync: %v %s", err, out)
		}
		d := time.Since(t0)
		c := childrenCPU() - c0
		os.Remove(cpPath)
		return d, c
	}
	runs := 1
	if v, err := strconv.Atoi(os.Getenv("BENCH_RUNS")); err == nil && v > 0 {
		runs = v
	}
	var cps, backups, restores, cpCPUs, backupCPUs, restoreCPUs []float64
	b.ResetTimer()
	for i := range b.N * runs {
		// cp before each timed step: on a shared machine the disk's
		// speed drifts, and each step is compared with the cp next to it.
		tcp1, ccp1 := cpSync(path)
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
		warm(path)
		c0 := selfCPU()
		t0 := time.Now()
		bk, err := db.Backup(ctx, bdir, plan)
		if err != nil {
			b.Fatal(err)
		}
		tb := time.Since(t0)
		cb := selfCPU() - c0
		if err := db.Up(ctx, plan, bk, "bench"); err != nil {
			b.Fatal(err)
		}
		db.Close()
		// The restore copies the backup's file: cp copies it too.
		tcp2, ccp2 := cpSync(filepath.Join(bk.Dir(), sqliteCopy))
		db, err = Open(ctx, "sqlite", path)
		if err != nil {
			b.Fatal(err)
		}
		syncAll()
		warm(filepath.Join(bk.Dir(), sqliteCopy))
		c0 = selfCPU()
		t0 = time.Now()
		if err := db.Rollback(ctx, bk); err != nil {
			b.Fatal(err)
		}
		tr := time.Since(t0)
		cr := selfCPU() - c0
		db.Close()
		os.RemoveAll(bdir)
		cps = append(cps, tcp1.Seconds(), tcp2.Seconds())
		backups = append(backups, tb.Seconds())
		restores = append(restores, tr.Seconds())
		cpCPUs = append(cpCPUs, ccp1, ccp2)
		backupCPUs = append(backupCPUs, cb)
		restoreCPUs = append(restoreCPUs, cr)
		fmt.Printf("run %d: cp+sync %.2fs (cpu %.2fs), backup %.2fs (cpu %.2fs; %.2f x the cp before it), cp+sync %.2fs (cpu %.2fs), restore %.2fs (cpu %.2fs; %.2f x)\n",
			i+1, tcp1.Seconds(), ccp1, tb.Seconds(), cb, tb.Seconds()/tcp1.Seconds(), tcp2.Seconds(), ccp2, tr.Seconds(), cr, tr.Seconds()/tcp2.Seconds())
	}
	cp, backup, restore := median(cps), median(backups), median(restores)
	fmt.Printf("RESULT sqlite-backup db_mb=%.0f runs=%d cp_sync_s=%.2f backup_s=%.2f restore_s=%.2f backup_x_cp=%.2f restore_x_cp=%.2f cpu_s: cp=%.2f backup=%.2f restore=%.2f (medians)\n",
		float64(fi.Size())/1e6, len(backups), cp, backup, restore, backup/cp, restore/cp, median(cpCPUs), median(backupCPUs), median(restoreCPUs))
	b.ReportMetric(float64(fi.Size())/1e6, "MB-db")
	b.ReportMetric(cp, "s-cp")
	b.ReportMetric(backup, "s-backup")
	b.ReportMetric(restore, "s-restore")
	b.ReportMetric(backup/cp, "x-cp-backup")
	b.ReportMetric(restore/cp, "x-cp-restore")
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
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
