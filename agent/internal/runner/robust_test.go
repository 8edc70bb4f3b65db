//go:build unix

package runner

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
)

// journalFault fails journal writes, as a full disk does, from the first
// write that matches trigger until cleared.
type journalFault struct {
	trigger string
	mu      sync.Mutex
	fired   bool
	failing bool
	refused []string // writes refused while failing
}

var errDiskFull = errors.New("database or disk is full (injected)")

func (f *journalFault) check(what string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.fired && strings.Contains(what, f.trigger) {
		f.fired, f.failing = true, true
	}
	if f.failing {
		f.refused = append(f.refused, what)
		return errDiskFull
	}
	return nil
}

// recoveriesRefused counts Recover's attempts refused while failing.
func (f *journalFault) recoveriesRefused() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, w := range f.refused {
		if strings.HasSuffix(w, " attempts") {
			n++
		}
	}
	return n
}

func (f *journalFault) clear() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failing = false
}

// TestJournalFailureAfterStop: the journal cannot be written once the app
// was stopped (a pre-stop hook filled the disk). The job stops there, the
// app is down; once the journal can be written again the running agent
// recovers the job itself, as a restart would: it rolls back and the old
// release runs again, without a restart of the agent.
func TestJournalFailureAfterStop(t *testing.T) {
	srv := newAgentServer(t, "tok-1")
	site := newAgentSite(t, srv, "tok-1")
	fault := &journalFault{trigger: "job-1.1.0 to staging"}
	site.fault = fault.check
	srv.assign(site.release(t, "1.0.0"))
	site.start(t)
	await(t, "1.0.0 runs", func() bool { return site.ended(t, "job-1.0.0") != nil && site.running() == "1.0.0" })

	srv.assign(site.release(t, "1.1.0"))
	await(t, "the journal fails after the app stopped, and a recovery was refused", func() bool {
		st, _ := site.status(t)
		return fault.recoveriesRefused() >= 2 && st.CurrentJob != nil && st.CurrentJob.State == protocol.StateStopping
	})
	if v := site.running(); v != "" {
		t.Fatalf("the app runs %s while the job is stuck after stopping it", v)
	}
	fault.clear() // the disk has room again
	await(t, "the job is rolled back and 1.0.0 runs again", func() bool {
		j := site.ended(t, "job-1.1.0")
		return j != nil && j.Result == protocol.ResultRolledBack && site.running() == "1.0.0"
	})
}

// TestJournalFailureDuringDownload: the download fails (the disk is full)
// and so does journaling the failure. Once the journal can be written
// again the running agent takes the job up: it is retried from its
// download, and succeeds.
func TestJournalFailureDuringDownload(t *testing.T) {
	srv := newAgentServer(t, "tok-1")
	site := newAgentSite(t, srv, "tok-1")
	fault := &journalFault{trigger: "job-1.1.0 to failed"}
	site.fault = fault.check
	srv.assign(site.release(t, "1.0.0"))
	site.start(t)
	await(t, "1.0.0 runs", func() bool { return site.ended(t, "job-1.0.0") != nil && site.running() == "1.0.0" })

	a := site.release(t, "1.1.0")
	site.fetcher.mu.Lock()
	site.fetcher.failNext = errors.New("write " + filepath.Join(site.cfg.DataDir, "downloads", "x.part") + ": no space left on device")
	site.fetcher.mu.Unlock()
	srv.assign(a)
	await(t, "the failure cannot be journaled, and a recovery was refused", func() bool { return fault.recoveriesRefused() >= 2 })
	if st, _ := site.status(t); st.CurrentJob == nil || st.CurrentJob.State != protocol.StateDownloading || site.running() != "1.0.0" {
		t.Fatalf("status %+v, running %q", st, site.running())
	}
	fault.clear()
	await(t, "the job is retried and 1.1.0 runs", func() bool {
		j := site.ended(t, a.JobID)
		return j != nil && j.Result == protocol.ResultSucceeded && site.running() == "1.1.0"
	})
}

// TestHungCheckin: a proxy holds a check-in open and never answers. The
// agent gives up on it after the long-poll wait plus its grace, status
// no longer says the server is reachable (and says why), and the agent
// checks in again.
func TestHungCheckin(t *testing.T) {
	srv := newAgentServer(t, "tok-1")
	srv.hangAfter = 1
	site := newAgentSite(t, srv, "tok-1")
	site.grace = 500 * time.Millisecond
	site.start(t)
	await(t, "the agent checks in again after a hung check-in", func() bool {
		var n int
		srv.with(func() { n = len(srv.checkins) })
		return n >= 3
	})
	_, c := site.status(t)
	if c.Reachable || c.Problem != ProblemTimeout || !strings.Contains(c.LastError, "no complete answer within") {
		t.Fatalf("contact after a hung check-in: %+v", c)
	}
}

// TestCredentialRefusedForAWhile: a proxy answers 401 for a while. The
// agent keeps its credential (it does not enroll again: its enroll token
// is used up), status says "credential refused", and once the server
// takes the credential again the agent goes on with it. Run under -race,
// this also checks that events are sent while the check-in loop handles
// the refusals.
func TestCredentialRefusedForAWhile(t *testing.T) {
	srv := newAgentServer(t, "tok-1")
	site := newAgentSite(t, srv, "tok-1")
	srv.assign(site.release(t, "1.0.0"))
	site.start(t)
	await(t, "1.0.0 runs", func() bool { return site.ended(t, "job-1.0.0") != nil && site.running() == "1.0.0" })

	srv.with(func() { srv.refuseCreds = true })
	await(t, "status says the credential is refused", func() bool {
		_, c := site.status(t)
		return !c.Reachable && c.Problem == ProblemCredentialRefused && c.Hint != ""
	})
	var refused int
	srv.with(func() { srv.refuseCreds = false; refused = len(srv.checkins) })
	await(t, "the agent checks in again with its credential", func() bool {
		var ok bool
		srv.with(func() { ok = len(srv.checkins) > refused+1 })
		_, c := site.status(t)
		return ok && c.Reachable
	})
	srv.with(func() {
		if srv.enrolls != 1 {
			t.Errorf("%d enrollments, want 1", srv.enrolls)
		}
		if last := srv.checkins[len(srv.checkins)-1]; last != "dla_cred-1" {
			t.Errorf("last check-in with credential %q, want dla_cred-1", last)
		}
	})
	if b, err := os.ReadFile(filepath.Join(site.cfg.DataDir, CredentialFile)); err != nil || strings.TrimSpace(string(b)) != "dla_cred-1" {
		t.Errorf("credential file %q, %v", b, err)
	}
}

// TestNewEnrollTokenAfterRefusal: a site whose credential the server no
// longer takes enrolls again when, and only when, its config holds a new
// enroll token.
func TestNewEnrollTokenAfterRefusal(t *testing.T) {
	srv := newAgentServer(t, "tok-1", "tok-2")
	site := newAgentSite(t, srv, "tok-1")
	_, stop := site.start(t)
	await(t, "enrolled", func() bool { _, c := site.status(t); return c.Reachable })
	stop()
	srv.with(func() { delete(srv.creds, "dla_cred-1") }) // revoked
	site.cfg.EnrollToken = "tok-2"
	site.start(t)
	await(t, "enrolled again with the new token", func() bool {
		var last string
		srv.with(func() { last = srv.checkins[len(srv.checkins)-1] })
		return last == "dla_cred-2"
	})
	if b, _ := os.ReadFile(filepath.Join(site.cfg.DataDir, CredentialFile)); strings.TrimSpace(string(b)) != "dla_cred-2" {
		t.Errorf("credential file %q", b)
	}
}

// TestStatusSaysEnrollTokenRefused: with an enroll token the server
// refuses (expired, used up), status says so and what to do, instead of
// "not contacted yet".
func TestStatusSaysEnrollTokenRefused(t *testing.T) {
	srv := newAgentServer(t) // no usable token
	site := newAgentSite(t, srv, "tok-expired")
	site.start(t)
	await(t, "status says the enroll token is refused", func() bool {
		_, c := site.status(t)
		return c.Problem == ProblemEnrollTokenRefused && strings.Contains(c.Hint, "new enroll token") && strings.Contains(c.LastError, "used up") && !c.LastErrorAt.IsZero()
	})
}
