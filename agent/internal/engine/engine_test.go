//go:build unix

package engine

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
)

var happyStates = []string{
	protocol.StateDownloading, protocol.StateVerified, protocol.StatePreflight, protocol.StateStopping,
	protocol.StateStaging, protocol.StateSwitching, protocol.StateStarting, protocol.StateHealthCheck,
	protocol.StateCommitted,
}

func TestFreshInstall(t *testing.T) {
	s := newSite(t)
	e := s.open(t)
	a := s.release(t, "1.0.0")

	st, err := e.Run(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	want := protocol.JobStatus{ID: a.JobID, From: "", To: "1.0.0", State: protocol.StateCommitted, Result: protocol.ResultSucceeded}
	if st != want {
		t.Fatalf("Run = %+v, want %+v", st, want)
	}
	s.checkConsistent(t, e, "1.0.0")
	if link, _ := os.Readlink(filepath.Join(s.InstallDir, "current")); link != "releases/1.0.0" {
		t.Errorf("current -> %q, want releases/1.0.0", link)
	}
	status := e.Status()
	if status.State != protocol.StateIdle || status.CurrentJob != nil || status.LastJob == nil || *status.LastJob != want || status.LastError != "" {
		t.Errorf("Status = %+v", status)
	}
	states, evs := checkEvents(t, e, a.JobID)
	if !slices.Equal(states, happyStates) {
		t.Errorf("events %v, want %v", states, happyStates)
	}
	if !strings.Contains(evs[3].Message, "nothing to stop") {
		t.Errorf("stopping on a fresh site says %q", evs[3].Message)
	}
	// Nothing left behind: no staging dir, no download.
	if got := s.releases(t); !slices.Equal(got, []string{"1.0.0"}) {
		t.Errorf("releases/ holds %v", got)
	}
	if _, err := os.Stat(filepath.Join(s.DataDir, "downloads")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("downloads left behind: %v", err)
	}
}

func TestUpgradeKeepsReleases(t *testing.T) {
	s := newSite(t)
	s.Keep = 2
	e := s.open(t)
	s.install(t, e, s.release(t, "1.0.0"))

	a := s.release(t, "1.1.0", "upgrade_from=>= 1.0, < 2.0")
	s.install(t, e, a)
	s.checkConsistent(t, e, "1.1.0")
	if got := s.releases(t); !slices.Equal(got, []string{"1.0.0", "1.1.0"}) {
		t.Errorf("after 1.1.0 releases/ holds %v", got)
	}
	states, evs := checkEvents(t, e, a.JobID)
	if !slices.Equal(states, happyStates) {
		t.Errorf("events %v", states)
	}
	if evs[3].Message != "stopping 1.0.0" {
		t.Errorf("stopping event says %q", evs[3].Message)
	}
	if st := e.Status().LastJob; st.From != "1.0.0" || st.To != "1.1.0" {
		t.Errorf("LastJob = %+v", st)
	}

	s.install(t, e, s.release(t, "1.2.0"))
	s.checkConsistent(t, e, "1.2.0")
	// KeepReleases = 2: the running one and the rollback target.
	if got := s.releases(t); !slices.Equal(got, []string{"1.1.0", "1.2.0"}) {
		t.Errorf("after 1.2.0 releases/ holds %v, want 1.1.0 and 1.2.0", got)
	}
}

func TestBadReleaseRollsBack(t *testing.T) {
	s := newSite(t)
	e := s.open(t)
	s.install(t, e, s.release(t, "1.0.0"))
	oldPid := s.pid()

	a := s.release(t, "1.1.0", "bad")
	st, err := e.Run(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	if st.Result != protocol.ResultRolledBack || st.State != protocol.StateRolledBack {
		t.Fatalf("Run = %+v, want rolled_back", st)
	}
	s.checkConsistent(t, e, "1.0.0")
	if s.pid() == oldPid {
		t.Errorf("the old app was never stopped")
	}
	states, evs := checkEvents(t, e, a.JobID)
	wantStates := []string{"downloading", "verified", "preflight", "stopping", "staging", "switching", "starting", "health_check", "rolling_back", "rolled_back"}
	if !slices.Equal(states, wantStates) {
		t.Errorf("events %v, want %v", states, wantStates)
	}
	rb := evs[8].Message
	if !strings.HasPrefix(rb, "health check failed: health_url answered 503") || !strings.Contains(rb, "after 1.5s") {
		t.Errorf("rolling_back event says %q, want the health failure", rb)
	}
	if status := e.Status(); !strings.Contains(status.LastError, "health_url answered 503") || status.State != protocol.StateIdle {
		t.Errorf("Status = %+v", status)
	}
	// The failed release is gone; the old one stays.
	if got := s.releases(t); !slices.Equal(got, []string{"1.0.0"}) {
		t.Errorf("releases/ holds %v", got)
	}
}

func TestFreshBadReleaseRollsBack(t *testing.T) {
	s := newSite(t)
	e := s.open(t)
	a := s.release(t, "1.0.0", "bad")
	st, err := e.Run(context.Background(), a)
	if err != nil || st.Result != protocol.ResultRolledBack {
		t.Fatalf("Run = %+v, %v; want rolled_back", st, err)
	}
	// As before: nothing installed, nothing runs.
	s.checkConsistent(t, e, "")
	if s.pid() != "" {
		t.Errorf("the bad app still runs (pid %s)", s.pid())
	}
	_, evs := checkEvents(t, e, a.JobID)
	if last := evs[len(evs)-1]; last.State != protocol.StateRolledBack || !strings.Contains(last.Message, "nothing was installed before") {
		t.Errorf("last event %+v", last)
	}
}

// Failures before stopping end the job failed, with the app untouched:
// the same process keeps running. (Refusals at the trust boundary are
// in trust_test.go.)
func TestFailuresBeforeStopping(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, s *testSite) protocol.Assignment
		wantErr string
		verify  bool // matches ErrVerification
	}{
		{"download fails", func(t *testing.T, s *testSite) protocol.Assignment {
			a := s.release(t, "1.1.0")
			tg := s.Fetcher.Targets[a.Target]
			tg.Err = "signature of targets.json does not verify"
			s.Fetcher.Targets[a.Target] = tg
			return a
		}, "download acme-erp/acme-erp-1.1.0.tar.gz: signature of targets.json does not verify", false},
		{"unknown target", func(t *testing.T, s *testSite) protocol.Assignment {
			a := s.release(t, "1.1.0")
			a.Target = "acme-erp/nope.tar.gz"
			return a
		}, "not found", false},
		{"file on disk differs", func(t *testing.T, s *testSite) protocol.Assignment {
			a := s.release(t, "1.1.0")
			tg := s.Fetcher.Targets[a.Target]
			tg.Corrupt = true
			s.Fetcher.Targets[a.Target] = tg
			return a
		}, "verify download: sha256", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newSite(t)
			e := s.open(t)
			s.install(t, e, s.release(t, "1.0.0"))
			pid := s.pid()
			a := tt.setup(t, s)

			st, err := e.Run(context.Background(), a)
			if err != nil || st.Result != protocol.ResultFailed || st.State != protocol.StateFailed {
				t.Fatalf("Run = %+v, %v; want failed", st, err)
			}
			status := e.Status()
			if !strings.Contains(status.LastError, tt.wantErr) {
				t.Errorf("LastError %q, want %q", status.LastError, tt.wantErr)
			}
			if status.State != protocol.StateIdle {
				t.Errorf("State %q: a failure before stopping leaves the site idle", status.State)
			}
			if s.pid() != pid {
				t.Errorf("the app was restarted: pid %s, was %s", s.pid(), pid)
			}
			s.checkConsistent(t, e, "1.0.0")
			states, _ := checkEvents(t, e, a.JobID)
			if slices.Contains(states, protocol.StateStopping) || states[len(states)-1] != protocol.StateFailed {
				t.Errorf("events %v", states)
			}
			if got := s.releases(t); !slices.Equal(got, []string{"1.0.0"}) {
				t.Errorf("releases/ holds %v", got)
			}
		})
	}
}

func TestReinstallKeptRelease(t *testing.T) {
	s := newSite(t)
	s.AllowDowngrade = true // going back is a downgrade: the config allows it
	e := s.open(t)
	a1 := s.release(t, "1.0.0")
	s.install(t, e, a1)
	s.install(t, e, s.release(t, "1.1.0"))

	// Back to the kept 1.0.0, intact: reused.
	back := a1
	back.JobID = "job-back-to-1.0.0"
	back.AllowDowngrade = true // and the assignment asks for it
	s.install(t, e, back)
	s.checkConsistent(t, e, "1.0.0")
	_, evs := checkEvents(t, e, back.JobID)
	if !strings.HasPrefix(evs[4].Message, "reusing releases/1.0.0") {
		t.Errorf("staging says %q, want reuse", evs[4].Message)
	}

	// Forward to the kept 1.1.0, changed by hand: replaced.
	p := filepath.Join(s.InstallDir, "releases", "1.1.0", "VERSION")
	if err := os.WriteFile(p, []byte("drifted\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fwd := s.release(t, "1.1.0")
	fwd.JobID = "job-forward-again"
	s.install(t, e, fwd)
	s.checkConsistent(t, e, "1.1.0")
	_, evs = checkEvents(t, e, fwd.JobID)
	if !strings.HasPrefix(evs[4].Message, "installing releases/1.1.0") {
		t.Errorf("staging says %q, want a fresh install", evs[4].Message)
	}
}

func TestAlreadyInstalled(t *testing.T) {
	s := newSite(t)
	e := s.open(t)
	a := s.release(t, "1.0.0")
	s.install(t, e, a)
	pid := s.pid()
	again := a
	again.JobID = "job-same-version"
	st, err := e.Run(context.Background(), again)
	if err != nil || st.Result != protocol.ResultSucceeded {
		t.Fatalf("Run = %+v, %v", st, err)
	}
	states, evs := checkEvents(t, e, again.JobID)
	if !slices.Equal(states, []string{protocol.StateCommitted}) || !strings.Contains(evs[0].Message, "already installed") {
		t.Errorf("events %+v", evs)
	}
	if s.pid() != pid {
		t.Error("the app was restarted")
	}
}

func TestFinishedJobIsNotRunAgain(t *testing.T) {
	s := newSite(t)
	e := s.open(t)
	a := s.release(t, "1.0.0")
	first, err := e.Run(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	pid := s.pid()
	before, _ := e.Events(context.Background(), a.JobID)
	again, err := e.Run(context.Background(), a)
	if err != nil || again != first {
		t.Fatalf("Run again = %+v, %v; want the recorded %+v", again, err, first)
	}
	after, _ := e.Events(context.Background(), a.JobID)
	if len(after) != len(before) || s.pid() != pid {
		t.Errorf("the job ran again: %d events (was %d), pid %s (was %s)", len(after), len(before), s.pid(), pid)
	}
}

func TestRunRefusesWhileAnotherJobRuns(t *testing.T) {
	s := newSite(t)
	e := s.open(t)
	a := s.release(t, "1.0.0")
	b := s.release(t, "1.1.0")

	// In this process: a second Run while the first downloads.
	s.Fetcher.block = make(chan struct{})
	done := make(chan error, 1)
	go func() { _, err := e.Run(context.Background(), a); done <- err }()
	deadline := time.Now().Add(5 * time.Second)
	for e.Status().CurrentJob == nil {
		if time.Now().After(deadline) {
			t.Fatal("the first job did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := e.Run(context.Background(), b); !errors.Is(err, ErrBusy) {
		t.Errorf("second Run = %v, want ErrBusy", err)
	}
	// Another process (the status command) sees the running job.
	if st, err := ReadStatus(s.DataDir); err != nil || st.CurrentJob == nil || st.CurrentJob.ID != a.JobID || st.State != protocol.StateDownloading {
		t.Errorf("ReadStatus during the job = %+v, %v", st, err)
	}
	close(s.Fetcher.block)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	s.Fetcher.block = nil

	// Across processes: a job left unfinished by a crash blocks Run until
	// Recover.
	e.Close()
	if code := runHelper(t, helperSpec{Site: s, Mode: "run", Assignment: b, Failpoint: "staging"}); code != FailpointExitCode {
		t.Fatalf("helper exited %d, want %d", code, FailpointExitCode)
	}
	e = s.open(t)
	c := s.release(t, "1.2.0")
	for _, x := range []protocol.Assignment{c, b} {
		if _, err := e.Run(context.Background(), x); !errors.Is(err, ErrUnfinished) {
			t.Errorf("Run(%s) with %s unfinished = %v, want ErrUnfinished", x.JobID, b.JobID, err)
		}
	}
	if err := e.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.install(t, e, c)
	s.checkConsistent(t, e, "1.2.0")
}

// A cancelled Run (the agent shuts down) is not a failure: the job stays
// unfinished where it was, and Recover on the next start rolls it back.
func TestCancelLeavesJobToRecover(t *testing.T) {
	s := newSite(t)
	s.HealthTimeout = time.Minute
	e := s.open(t)
	s.install(t, e, s.release(t, "1.0.0"))
	a := s.release(t, "1.1.0", "bad")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for e.Status().State != protocol.StateHealthCheck {
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
	}()
	st, err := e.Run(ctx, a)
	if !errors.Is(err, context.Canceled) || st.Result != "" || st.State != protocol.StateHealthCheck {
		t.Fatalf("cancelled Run = %+v, %v; want the job unfinished in health_check and context.Canceled", st, err)
	}
	if cur := e.Status().CurrentJob; cur == nil || cur.ID != a.JobID {
		t.Fatalf("CurrentJob = %+v", cur)
	}
	if err := e.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	if last := e.Status().LastJob; last.Result != protocol.ResultRolledBack {
		t.Fatalf("after Recover LastJob = %+v", last)
	}
	s.checkConsistent(t, e, "1.0.0")
}
