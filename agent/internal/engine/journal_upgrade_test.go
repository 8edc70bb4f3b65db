//go:build unix

package engine

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dropless/dropless/pkg/protocol"
)

// TestJournalSchemaFrozen: the current journal schema is frozen in
// testdata. Changing a released schema step breaks every agent whose
// journal already ran it: append a step instead, and freeze the new
// schema as testdata/journal-N.schema (and journals of it with an
// interrupted job as testdata/journal-N*.sql: one interrupted before the
// app was touched, one after).
func TestJournalSchemaFrozen(t *testing.T) {
	s := newSite(t)
	s.open(t)
	db, err := sql.Open("sqlite", filepath.Join(s.DataDir, JournalName)+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	got := dumpJournalSchema(t, db)
	name := filepath.Join("testdata", fmt.Sprintf("journal-%d.schema", len(schema)))
	want, err := os.ReadFile(name)
	if err != nil {
		t.Fatalf("freeze the current journal schema as %s: %v\n%s", name, err, got)
	}
	if got != string(want) {
		t.Fatalf("journal schema differs from %s:\n%s", name, got)
	}
}

func dumpJournalSchema(t *testing.T, db *sql.DB) string {
	t.Helper()
	rows, err := db.Query(`SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		b.WriteString(s + ";\n")
	}
	return b.String()
}

// TestJournalUpgradeFromSchema1: an agent upgraded over a journal of
// schema 1 (testdata/journal-1.sql, frozen: a site on 1.0.0 whose job to
// 1.1.0 was interrupted while downloading) migrates it, and Recover runs
// the interrupted job again to its end: the journal kept no assignment
// flags, so the job's own fields make the assignment.
func TestJournalUpgradeFromSchema1(t *testing.T) {
	s := newSite(t)
	e := s.open(t)
	s.install(t, e, s.release(t, "1.0.0"))
	e.Close()
	// The agent's journal as schema 1 left it.
	loadFrozenJournal(t, s, "journal-1.sql", 1)
	a := s.release(t, "1.1.0")

	e = s.open(t)
	if st := e.Status(); st.CurrentJob == nil || st.CurrentJob.ID != a.JobID || st.CurrentJob.State != protocol.StateDownloading {
		t.Fatalf("after the upgrade Status = %+v, want %s unfinished in downloading", st, a.JobID)
	}
	if v, err := e.j.version(context.Background()); err != nil || v != len(schema) {
		t.Fatalf("journal version %d, %v; want %d", v, err, len(schema))
	}
	if err := e.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := e.Status()
	if st.LastJob == nil || st.LastJob.ID != a.JobID || st.LastJob.Result != protocol.ResultSucceeded || st.LastJob.From != "1.0.0" {
		t.Fatalf("after Recover Status = %+v", st)
	}
	s.checkConsistent(t, e, "1.1.0")
}

// TestReadStatusOfSchema1: `status` of a new agent reads a journal the
// old agent still runs on (the binary was upgraded, the service not yet
// restarted): it shows the interrupted job, and does not change the file.
func TestReadStatusOfSchema1(t *testing.T) {
	s := newSite(t)
	if err := os.MkdirAll(s.DataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	frozen, err := os.ReadFile(filepath.Join("testdata", "journal-1.sql"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(s.DataDir, JournalName)
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(string(frozen) + "PRAGMA user_version = 1;"); err != nil {
		t.Fatal(err)
	}
	st, err := ReadStatus(s.DataDir)
	if err != nil {
		t.Fatalf("ReadStatus of a schema 1 journal: %v", err)
	}
	if st.InstalledVersion != "1.0.0" || st.CurrentJob == nil || st.CurrentJob.ID != "job-1.1.0" || st.State != protocol.StateDownloading || st.LastJob == nil || st.LastJob.ID != "job-1.0.0" {
		t.Errorf("ReadStatus = %+v", st)
	}
	var v int
	if err := db.QueryRow("PRAGMA user_version").Scan(&v); err != nil || v != 1 {
		t.Errorf("user_version %d after ReadStatus, %v", v, err)
	}
}

// loadFrozenJournal replaces the site's journal with the frozen journal
// testdata/name of schema version v.
func loadFrozenJournal(t *testing.T, s *testSite, name string, v int) {
	t.Helper()
	for _, suffix := range []string{"", "-wal", "-shm"} {
		os.Remove(filepath.Join(s.DataDir, JournalName+suffix))
	}
	frozen, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", filepath.Join(s.DataDir, JournalName))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(string(frozen) + fmt.Sprintf("PRAGMA user_version = %d;", v)); err != nil {
		t.Fatalf("load testdata/%s: %v", name, err)
	}
}

// TestJournalUpgradeFromSchema1Rollback: an agent of schema 1 was killed
// in starting (testdata/journal-1-starting.sql, frozen: current switched
// to the releases/1.1.0 that staging created, the app stopped, three
// events not yet delivered). The new agent migrates the journal, still
// delivers the old agent's events, and Recover rolls back with what
// schema 1 recorded (prev_link, release_created): 1.0.0 runs and is
// healthy again, releases/1.1.0 is gone, the job ends rolled_back.
func TestJournalUpgradeFromSchema1Rollback(t *testing.T) {
	ctx := context.Background()
	s := newSite(t)
	e := s.open(t)
	s.install(t, e, s.release(t, "1.0.0"))
	e.Close()
	// The disk as the old agent left it: the same job, killed in starting.
	a := s.release(t, "1.1.0")
	if code := runHelper(t, helperSpec{Site: s, Mode: "run", Assignment: a, Failpoint: protocol.StateStarting}); code != FailpointExitCode {
		t.Fatalf("helper exit %d, want the failpoint's %d", code, FailpointExitCode)
	}
	if got := s.current(t); got != "1.1.0" {
		t.Fatalf("after the kill current -> %q, want 1.1.0", got)
	}
	loadFrozenJournal(t, s, "journal-1-starting.sql", 1)

	e = s.open(t)
	if st := e.Status(); st.CurrentJob == nil || st.CurrentJob.ID != a.JobID || st.CurrentJob.State != protocol.StateStarting {
		t.Fatalf("after the upgrade Status = %+v, want %s unfinished in starting", st, a.JobID)
	}
	evs, err := e.PendingEvents(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	var pending []string
	for _, ev := range evs {
		pending = append(pending, fmt.Sprintf("%d %s %s", ev.Seq, ev.State, ev.Message))
	}
	if want := []string{"5 staging staging 1.1.0", "6 switching switching to 1.1.0", "7 starting starting 1.1.0"}; !slices.Equal(pending, want) {
		t.Errorf("pending events after the upgrade = %q, want %q", pending, want)
	}
	if err := e.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	st := e.Status()
	if st.LastJob == nil || st.LastJob.ID != a.JobID || st.LastJob.Result != protocol.ResultRolledBack || st.CurrentJob != nil {
		t.Fatalf("after Recover Status = %+v", st)
	}
	s.checkConsistent(t, e, "1.0.0")
	if _, err := os.Lstat(filepath.Join(s.InstallDir, "releases", "1.1.0")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("releases/1.1.0, created by the interrupted job's staging, is still there: %v", err)
	}
	evs, _ = e.Events(ctx, a.JobID)
	if last := evs[len(evs)-1]; last.Seq != 9 || last.State != protocol.StateRolledBack {
		t.Errorf("the job's last event = %+v, want seq 9 rolled_back after the 7 of schema 1 and rolling_back", last)
	}
}
