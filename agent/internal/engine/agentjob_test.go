//go:build unix

package engine

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dropless/dropless/pkg/protocol"
)

// agentRelease offers a release of the agent itself (any payload: the
// engine only checks and downloads it).
func agentRelease(t *testing.T, s *testSite, v string, opts ...string) protocol.Assignment {
	t.Helper()
	a := s.release(t, v, append([]string{"product=" + AgentProduct}, opts...)...)
	a.Product = AgentProduct
	return a
}

func TestAgentJobIsJournaledAndExcludesAppJobs(t *testing.T) {
	ctx := context.Background()
	s := newSite(t)
	e := s.open(t)
	a := agentRelease(t, s, "2.0.0", "upgrade_from=>= 1.0")
	aj, ended, err := e.StartAgentJob(ctx, a, "1.0.0")
	if err != nil || ended {
		t.Fatalf("StartAgentJob = %v, %v", ended, err)
	}
	if st := e.Status(); st.CurrentJob == nil || st.CurrentJob.ID != a.JobID || st.State != protocol.StateDownloading {
		t.Fatalf("status while the self-update runs: %+v", st)
	}
	// The app's job waits: one unfinished job at a time, of any product.
	app := s.release(t, "1.0.0")
	if _, err := e.Run(ctx, app); !errors.Is(err, ErrUnfinished) {
		t.Fatalf("app job during a self-update: %v, want ErrUnfinished", err)
	}
	// Recover leaves the self-update to the runner.
	if err := e.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.UnfinishedAgentJob(ctx); got == nil || got.ID() != a.JobID || got.From() != "1.0.0" || got.To() != "2.0.0" {
		t.Fatalf("UnfinishedAgentJob after Recover = %+v", got)
	}
	if _, _, err := e.CheckAgentTarget(ctx, a, "1.0.0"); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "b.tar.gz")
	if err := aj.DownloadAgentTarget(ctx, dst); err != nil {
		t.Fatal(err)
	}
	for _, st := range []string{protocol.StateVerified, protocol.StatePreflight, protocol.StateSwitching, protocol.StateStarting} {
		if err := aj.Enter(ctx, st, st); err != nil {
			t.Fatal(err)
		}
	}
	if err := aj.End(ctx, protocol.ResultRolledBack, "the new agent exited"); err != nil {
		t.Fatal(err)
	}
	st := e.Status()
	if st.CurrentJob != nil || st.LastJob == nil || st.LastJob.Result != protocol.ResultRolledBack || st.LastError != "the new agent exited" {
		t.Fatalf("status after the rollback: %+v", st)
	}
	if st.InstalledVersion != "" {
		t.Errorf("a self-update changed the app's installed version to %q", st.InstalledVersion)
	}
	if names, _ := checkEvents(t, e, a.JobID); strings.Join(names, ",") != "downloading,verified,preflight,switching,starting,rolled_back" {
		t.Errorf("events: %v", names)
	}
	// Started again with the same ID: not run again.
	if _, ended, err := e.StartAgentJob(ctx, a, "1.0.0"); err != nil || !ended {
		t.Fatalf("the same job again: ended=%v %v", ended, err)
	}
	// The app's job runs now.
	if js, err := e.Run(ctx, app); err != nil || js.Result != protocol.ResultSucceeded {
		t.Fatalf("app job after the self-update: %+v %v", js, err)
	}
}

func TestCheckAgentTargetAppliesTheTrustRules(t *testing.T) {
	ctx := context.Background()
	s := newSite(t)
	e := s.open(t)
	for _, tc := range []struct {
		name, running string
		a             protocol.Assignment
		wantErr       string
	}{
		{"upgrade", "1.0.0", agentRelease(t, s, "2.0.0", "upgrade_from=>= 1.0"), ""},
		{"not admitted by upgrade_from", "0.9.0", agentRelease(t, s, "2.0.1", "upgrade_from=>= 1.0"), "cannot upgrade from the installed 0.9.0"},
		{"downgrade not allowed", "3.0.0", agentRelease(t, s, "2.0.2"), "older than the installed 3.0.0"},
		{"signed as the app", "1.0.0", func() protocol.Assignment { a := s.release(t, "2.0.3"); a.Product = AgentProduct; return a }(), `of product "` + product + `"`},
		{"signed as another version", "1.0.0", agentRelease(t, s, "2.0.4", "says=9.9.9"), `version "9.9.9"`},
		{"assignment for the app", "1.0.0", func() protocol.Assignment { a := agentRelease(t, s, "2.0.5"); a.Product = product; return a }(), "the assignment is for product"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := e.CheckAgentTarget(ctx, tc.a, tc.running)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want ErrUntrusted with %q", err, tc.wantErr)
			}
		})
	}
}

// TestRestoreJournalIfNewer: after a rollback, the old agent cannot read a
// journal the new one migrated; the snapshot from before the swap is put
// in its place, and only then.
func TestRestoreJournalIfNewer(t *testing.T) {
	ctx := context.Background()
	s := newSite(t)
	e := s.open(t)
	snap := filepath.Join(t.TempDir(), "snap.db")
	if err := e.SnapshotJournal(ctx, snap); err != nil {
		t.Fatal(err)
	}
	e.Close()
	if ok, err := RestoreJournalIfNewer(ctx, s.DataDir, snap); err != nil || ok {
		t.Fatalf("a journal of this schema was replaced: %v %v", ok, err)
	}
	// The "new agent" migrates the journal one step further.
	db, err := sql.Open("sqlite", "file:"+filepath.Join(s.DataDir, JournalName))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("CREATE TABLE newer (x); PRAGMA user_version = 99"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := Open(ctx, s.config(testLogger(t), "")); err == nil || !strings.Contains(err.Error(), "newer than this agent knows") {
		t.Fatalf("Open of a newer journal: %v", err)
	}
	if ok, err := RestoreJournalIfNewer(ctx, s.DataDir, snap); err != nil || !ok {
		t.Fatalf("RestoreJournalIfNewer = %v, %v", ok, err)
	}
	e2, err := Open(ctx, s.config(testLogger(t), ""))
	if err != nil {
		t.Fatalf("the old agent cannot open the restored journal: %v", err)
	}
	e2.Close()
	if _, err := os.Stat(snap); err == nil {
		t.Error("the snapshot is still there: it became the journal")
	}
}
