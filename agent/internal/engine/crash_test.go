//go:build unix

package engine

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
)

// TestCrashMatrix kills a real agent process at each state of a job (the
// failpoint exits right after the state was journaled, before its
// action), then opens the journal again, recovers, and checks the whole
// site: the job ended as the recovery table says, current points at a
// complete release, the app runs that release and is healthy, the status
// reports it, and the job's events are in order without gaps.
func TestCrashMatrix(t *testing.T) {
	tests := []struct {
		failpoint  string
		fresh      bool // nothing installed before the job
		bad        bool // the new release fails its health check
		retried    bool // Recover runs the job again from its download
		wantResult string
		wantOn     string // the version running afterwards ("" = none)
	}{
		// Before the app is touched: the job runs again, downloading
		// and verifying everything again, and succeeds.
		{failpoint: "downloading", retried: true, wantResult: protocol.ResultSucceeded, wantOn: "1.1.0"},
		{failpoint: "verified", retried: true, wantResult: protocol.ResultSucceeded, wantOn: "1.1.0"},
		{failpoint: "preflight", retried: true, wantResult: protocol.ResultSucceeded, wantOn: "1.1.0"},
		{failpoint: "downloading", fresh: true, retried: true, wantResult: protocol.ResultSucceeded, wantOn: "1.1.0"},
		// From stopping to health_check: rolled back to the old release.
		{failpoint: "stopping", wantResult: protocol.ResultRolledBack, wantOn: "1.0.0"},
		{failpoint: "staging", wantResult: protocol.ResultRolledBack, wantOn: "1.0.0"},
		{failpoint: "switching", wantResult: protocol.ResultRolledBack, wantOn: "1.0.0"},
		{failpoint: "starting", wantResult: protocol.ResultRolledBack, wantOn: "1.0.0"},
		{failpoint: "health_check", wantResult: protocol.ResultRolledBack, wantOn: "1.0.0"},
		// The new release passed its health check: the commit is finished.
		{failpoint: "committed", wantResult: protocol.ResultSucceeded, wantOn: "1.1.0"},
		// Interrupted while rolling back a bad release: rolled back again.
		{failpoint: "rolling_back", bad: true, wantResult: protocol.ResultRolledBack, wantOn: "1.0.0"},
		// A fresh site: rolling back leaves nothing installed and running.
		{failpoint: "stopping", fresh: true, wantResult: protocol.ResultRolledBack, wantOn: ""},
		{failpoint: "health_check", fresh: true, wantResult: protocol.ResultRolledBack, wantOn: ""},
		{failpoint: "rolling_back", fresh: true, bad: true, wantResult: protocol.ResultRolledBack, wantOn: ""},
		{failpoint: "committed", fresh: true, wantResult: protocol.ResultSucceeded, wantOn: "1.1.0"},
	}
	for _, tt := range tests {
		name := tt.failpoint
		if tt.fresh {
			name = "fresh/" + name
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s := newSite(t)
			from := ""
			if !tt.fresh {
				e := s.open(t)
				s.install(t, e, s.release(t, "1.0.0"))
				e.Close()
				from = "1.0.0"
			}
			var a protocol.Assignment
			if tt.bad {
				a = s.release(t, "1.1.0", "bad")
			} else {
				a = s.release(t, "1.1.0")
			}

			// The agent dies at the failpoint.
			if code := runHelper(t, helperSpec{Site: s, Mode: "run", Assignment: a, Failpoint: tt.failpoint}); code != FailpointExitCode {
				t.Fatalf("agent exited %d, want %d (failpoint %s)", code, FailpointExitCode, tt.failpoint)
			}

			// It starts again: the journal shows the job where it died.
			e := s.open(t)
			st := e.Status()
			if st.CurrentJob == nil || st.CurrentJob.State != tt.failpoint || st.State != tt.failpoint {
				t.Fatalf("after the crash Status = %+v, want job %s in %s", st, a.JobID, tt.failpoint)
			}
			if err := e.Recover(ctx); err != nil {
				t.Fatalf("Recover: %v", err)
			}

			st = e.Status()
			want := protocol.JobStatus{ID: a.JobID, From: from, To: "1.1.0", Result: tt.wantResult}
			got := *st.LastJob
			got.State = ""
			if st.CurrentJob != nil || got != want {
				t.Fatalf("after Recover Status = %+v, last job %+v, want %+v", st, *st.LastJob, want)
			}
			s.checkConsistent(t, e, tt.wantOn)
			if st.State != protocol.StateIdle {
				t.Errorf("State = %q, want idle", st.State)
			}

			states, evs := checkEvents(t, e, a.JobID)
			if states[0] != protocol.StateDownloading || !slices.Contains(states, tt.failpoint) {
				t.Errorf("events %v", states)
			}
			last := states[len(states)-1]
			wantLast := map[string]string{
				protocol.ResultFailed:     protocol.StateFailed,
				protocol.ResultRolledBack: protocol.StateRolledBack,
				protocol.ResultSucceeded:  protocol.StateCommitted,
			}[tt.wantResult]
			if last != wantLast {
				t.Errorf("last event %s, want %s (events %v)", last, wantLast, states)
			}
			// A retried job downloaded and verified again after the crash.
			if tt.retried {
				n := strings.Count(strings.Join(states, " "), protocol.StateVerified)
				if !strings.Contains(evs[slices.Index(states, tt.failpoint)+1].Message, "trying again (retry 1 of 3)") || n != 1+btoi(tt.failpoint != "downloading") {
					t.Errorf("the job was not retried from its download: %+v", evs)
				}
			}
			// The recovery says why in its event.
			if tt.wantResult != protocol.ResultSucceeded || tt.retried {
				found := false
				for _, ev := range evs {
					found = found || strings.Contains(ev.Message, "interrupted")
				}
				if !found {
					t.Errorf("no event says the job was interrupted: %+v", evs)
				}
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestRecoverRetryGivesUp: a job whose download is interrupted every time
// (the agent dies in downloading, then in every retry) is retried
// MaxRecoveries times, then ends failed with a reason that says so; the
// old release runs on, untouched.
func TestRecoverRetryGivesUp(t *testing.T) {
	s := newSite(t)
	e := s.open(t)
	s.install(t, e, s.release(t, "1.0.0"))
	e.Close()
	a := s.release(t, "1.1.0")
	if code := runHelper(t, helperSpec{Site: s, Mode: "run", Assignment: a, Failpoint: "downloading"}); code != FailpointExitCode {
		t.Fatalf("agent exited %d", code)
	}
	for i := range MaxRecoveries {
		if code := runHelper(t, helperSpec{Site: s, Mode: "recover", Failpoint: "downloading"}); code != FailpointExitCode {
			t.Fatalf("retry %d exited %d", i+1, code)
		}
	}
	e = s.open(t)
	if err := e.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := e.Status()
	if st.LastJob == nil || st.LastJob.Result != protocol.ResultFailed || !strings.Contains(st.LastError, "gave up after 3 attempts") {
		t.Fatalf("Status = %+v", st)
	}
	// Nothing was touched: the site is not failed, the old release runs.
	if st.State != protocol.StateIdle {
		t.Errorf("State = %q, want idle", st.State)
	}
	s.checkConsistent(t, e, "1.0.0")
	states, _ := checkEvents(t, e, a.JobID)
	if n := strings.Count(strings.Join(states, " "), "downloading"); n != 1+MaxRecoveries {
		t.Errorf("%d downloading events, want %d: %v", n, 1+MaxRecoveries, states)
	}
}

// TestRecoverGivesUp: an agent that dies every time it recovers the same
// job (a crash loop) ends the job failed after MaxRecoveries attempts.
func TestRecoverGivesUp(t *testing.T) {
	s := newSite(t)
	e := s.open(t)
	s.install(t, e, s.release(t, "1.0.0"))
	e.Close()
	a := s.release(t, "1.1.0")
	if code := runHelper(t, helperSpec{Site: s, Mode: "run", Assignment: a, Failpoint: "switching"}); code != FailpointExitCode {
		t.Fatalf("agent exited %d", code)
	}
	// Each recovery dies as it enters rolling_back.
	for i := range MaxRecoveries {
		if code := runHelper(t, helperSpec{Site: s, Mode: "recover", Failpoint: "rolling_back"}); code != FailpointExitCode {
			t.Fatalf("recovery %d exited %d", i+1, code)
		}
	}
	e = s.open(t)
	if err := e.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := e.Status()
	if st.LastJob == nil || st.LastJob.Result != protocol.ResultFailed || !strings.Contains(st.LastError, "gave up after 3 attempts") {
		t.Fatalf("Status = %+v", st)
	}
	// The app may be down: the site says it needs a person.
	if st.State != protocol.StateFailed {
		t.Errorf("State = %q, want failed", st.State)
	}
	states, _ := checkEvents(t, e, a.JobID)
	if n := strings.Count(strings.Join(states, " "), "rolling_back"); n != MaxRecoveries {
		t.Errorf("%d rolling_back events, want %d: %v", n, MaxRecoveries, states)
	}

	// A later successful job clears the failed state.
	s.install(t, e, s.release(t, "1.2.0"))
	s.checkConsistent(t, e, "1.2.0")
	if st := e.Status(); st.State != protocol.StateIdle || st.LastError != "" {
		t.Errorf("after a good job Status = %+v", st)
	}
}

// TestCrashMatrixDatabase is TestCrashMatrix with a bundle that has
// migrations and a client database holding the client's rows: after the
// recovery the database matches the version that runs (the old one's
// exactly, by fingerprint, or the new one's schema with the client's rows
// kept), whichever state the agent died in, backing_up, migrating and
// rolling_back included, and the schema recorded for schema drift is the
// running release's, a crash at committed (between the health check and
// the record) included. SQLite for every failpoint, PostgreSQL (when
// TEST_POSTGRES_DSN is set) for those around the database steps.
func TestCrashMatrixDatabase(t *testing.T) {
	tests := []struct {
		failpoint  string
		fresh      bool
		bad        bool
		postgres   bool // run the PostgreSQL variant too
		wantResult string
		wantOn     string
	}{
		// Before the app is touched: retried, and migrated once.
		{failpoint: "downloading", wantResult: protocol.ResultSucceeded, wantOn: "1.1.0"},
		{failpoint: "preflight", wantResult: protocol.ResultSucceeded, wantOn: "1.1.0"},
		{failpoint: "stopping", wantResult: protocol.ResultRolledBack, wantOn: "1.0.0"},
		{failpoint: "staging", wantResult: protocol.ResultRolledBack, wantOn: "1.0.0"},
		{failpoint: "backing_up", postgres: true, wantResult: protocol.ResultRolledBack, wantOn: "1.0.0"},
		{failpoint: "migrating", postgres: true, wantResult: protocol.ResultRolledBack, wantOn: "1.0.0"},
		{failpoint: "switching", postgres: true, wantResult: protocol.ResultRolledBack, wantOn: "1.0.0"},
		{failpoint: "starting", wantResult: protocol.ResultRolledBack, wantOn: "1.0.0"},
		{failpoint: "health_check", postgres: true, wantResult: protocol.ResultRolledBack, wantOn: "1.0.0"},
		{failpoint: "committed", postgres: true, wantResult: protocol.ResultSucceeded, wantOn: "1.1.0"},
		{failpoint: "rolling_back", bad: true, postgres: true, wantResult: protocol.ResultRolledBack, wantOn: "1.0.0"},
		// A fresh site: the database did not exist (SQLite) or was empty.
		{failpoint: "migrating", fresh: true, postgres: true, wantResult: protocol.ResultRolledBack, wantOn: ""},
		{failpoint: "health_check", fresh: true, wantResult: protocol.ResultRolledBack, wantOn: ""},
		{failpoint: "rolling_back", fresh: true, bad: true, wantResult: protocol.ResultRolledBack, wantOn: ""},
		{failpoint: "committed", fresh: true, wantResult: protocol.ResultSucceeded, wantOn: "1.1.0"},
	}
	for _, tt := range tests {
		for _, kind := range []string{"sqlite", "postgres"} {
			if kind == "postgres" && !tt.postgres {
				continue
			}
			name := kind + "/" + tt.failpoint
			if tt.fresh {
				name = kind + "/fresh/" + tt.failpoint
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				s := newSite(t)
				if kind == "sqlite" {
					withSQLite(t, s)
				} else {
					withPostgres(t, s)
				}
				from := ""
				if !tt.fresh {
					e := s.open(t)
					s.install(t, e, s.releaseWith(t, "1.0.0", relSpec{Migrations: migrations100}))
					e.Close()
					from = "1.0.0"
					s.dbExec(t, clientRows...)
				}
				before := s.dbFingerprint(t)
				spec := relSpec{Migrations: migrations110}
				if tt.bad {
					spec.Opts = []string{"bad"}
				}
				a := s.releaseWith(t, "1.1.0", spec)

				if code := runHelper(t, helperSpec{Site: s, Mode: "run", Assignment: a, Failpoint: tt.failpoint}); code != FailpointExitCode {
					t.Fatalf("agent exited %d, want %d (failpoint %s)", code, FailpointExitCode, tt.failpoint)
				}
				e := s.open(t)
				if st := e.Status(); st.CurrentJob == nil || st.CurrentJob.State != tt.failpoint {
					t.Fatalf("after the crash Status = %+v, want job %s in %s", st, a.JobID, tt.failpoint)
				}
				if err := e.Recover(ctx); err != nil {
					t.Fatalf("Recover: %v", err)
				}
				st := e.Status()
				if st.CurrentJob != nil || st.LastJob == nil || st.LastJob.Result != tt.wantResult || st.State != protocol.StateIdle {
					t.Fatalf("after Recover Status = %+v, want the job %s", st, tt.wantResult)
				}
				if st.LastJob.From != from {
					t.Errorf("LastJob.From = %q, want %q", st.LastJob.From, from)
				}
				s.checkConsistent(t, e, tt.wantOn)

				// The database matches the version that runs.
				switch tt.wantOn {
				case "1.1.0":
					want := []string{"0001_create_customers@1.0.0", "0002_add_email@1.0.0", "0003_orders@1.1.0", "0004_seed_vendor@1.1.0"}
					wantRows := []string{"1|alice|alice@example.com", "2|bob|", "1000|vendor|"}
					if tt.fresh {
						want = []string{"0001_create_customers@1.1.0", "0002_add_email@1.1.0", "0003_orders@1.1.0", "0004_seed_vendor@1.1.0"}
						wantRows = []string{"1000|vendor|"}
					}
					if got := s.dbRecords(t); !slices.Equal(got, want) {
						t.Errorf("records %v, want %v", got, want)
					}
					if got := s.customers(t); !slices.Equal(got, wantRows) {
						t.Errorf("customers %v, want %v", got, wantRows)
					}
				default:
					if got := s.dbFingerprint(t); got != before {
						t.Errorf("database fingerprint %s, %s before the job", got, before)
					}
					if !tt.fresh {
						if got := s.customers(t); !slices.Equal(got, []string{"1|alice|alice@example.com", "2|bob|"}) {
							t.Errorf("customers %v", got)
						}
					} else if kind == "sqlite" {
						if _, err := os.Stat(s.Database.DSN); !errors.Is(err, fs.ErrNotExist) {
							t.Errorf("the database the job created is still there: %v", err)
						}
					}
				}
				if b := s.backups(t); len(b) != 0 {
					t.Errorf("backups left behind: %v", b)
				}
				// The schema recorded for schema drift is the running
				// release's (a crash between the health check and its
				// write, at committed, included): nothing is reported.
				if got := recordedSchema(t, s); got != tt.wantOn {
					t.Errorf("schema recorded for %q, want %q", got, tt.wantOn)
				}
				if d, err := e.CheckDrift(ctx); err != nil || len(d) != 0 {
					t.Errorf("drift after the recovery: %q, %v", d, err)
				}
				states, _ := checkEvents(t, e, a.JobID)
				if !slices.Contains(states, tt.failpoint) {
					t.Errorf("events %v", states)
				}
			})
		}
	}
}

// TestKillDuringMigration kills the agent (SIGKILL) in the middle of Up on
// SQLite, after some of the job's migrations committed and while a slow
// one runs: the recovery restores the database exactly and the old
// release runs again.
func TestKillDuringMigration(t *testing.T) {
	ctx := context.Background()
	s := newSite(t)
	withSQLite(t, s)
	e := s.open(t)
	s.install(t, e, s.releaseWith(t, "1.0.0", relSpec{Migrations: migrations100}))
	e.Close()
	s.dbExec(t, clientRows...)
	before := s.dbFingerprint(t)
	slow := map[string]string{
		"0005_big.up.sql": "CREATE TABLE big (x INTEGER);\n" +
			"INSERT INTO big WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 50000000) SELECT x FROM c;\n",
		"0005_big.down.sql": "DROP TABLE big;\n",
	}
	a := s.releaseWith(t, "1.1.0", relSpec{Migrations: withMigrations(migrations110, slow)})

	cmd := startHelper(t, helperSpec{Site: s, Mode: "run", Assignment: a})
	// Wait until the job migrates and its first migrations committed.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatal("the job never got to its slow migration")
		}
		st, err := ReadStatus(s.DataDir)
		if err == nil && st.State == protocol.StateMigrating && slices.Contains(s.tryRecords(), "0004_seed_vendor@1.1.0") {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	e = s.open(t)
	if err := e.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if st := e.Status(); st.LastJob == nil || st.LastJob.Result != protocol.ResultRolledBack {
		t.Fatalf("after Recover Status = %+v", st)
	}
	s.checkConsistent(t, e, "1.0.0")
	if got := s.dbFingerprint(t); got != before {
		t.Errorf("database fingerprint %s, %s before the job", got, before)
	}
	if got := s.customers(t); !slices.Equal(got, []string{"1|alice|alice@example.com", "2|bob|"}) {
		t.Errorf("customers %v", got)
	}
}
