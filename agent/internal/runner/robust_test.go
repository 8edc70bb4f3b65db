//go:build unix

package runner

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
)

// journalFault fails journal writes, as a full disk does, from the first
// write that matches trigger until Recover was refused recoveries times
// (then the disk has room again).
type journalFault struct {
	trigger    string
	recoveries int
	mu         sync.Mutex
	fired      bool
	failing    bool
	refused    []string // writes refused while failing
}

var errDiskFull = errors.New("database or disk is full (injected)")

func (f *journalFault) check(what string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.fired && strings.Contains(what, f.trigger) {
		f.fired, f.failing = true, true
	}
	if !f.failing {
		return nil
	}
	f.refused = append(f.refused, what)
	if strings.HasSuffix(what, " attempts") {
		f.recoveries--
		f.failing = f.recoveries > 0
	}
	return errDiskFull
}

func (f *journalFault) refusedWrites() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.refused...)
}

// TestJournalFailureAfterStop: the journal cannot be written once the app
// was stopped (a pre-stop hook filled the disk). The job stops there, the
// app is down; once the journal can be written again the running agent
// recovers the job itself, as a restart would: it rolls back and the old
// release runs again, without a restart of the agent.
func TestJournalFailureAfterStop(t *testing.T) {
	srv := newAgentServer(t, "tok-1")
	site := newAgentSite(t, srv, "tok-1")
	fault := &journalFault{trigger: "job-1.1.0 to staging", recoveries: 2}
	site.fault = fault.check
	srv.assign(site.release(t, "1.0.0"))
	site.start(t)
	await(t, "1.0.0 runs", func() bool { return site.ended(t, "job-1.0.0") != nil && site.running() == "1.0.0" })

	srv.assign(site.release(t, "1.1.0"))
	await(t, "the job is rolled back and 1.0.0 runs again", func() bool {
		j := site.ended(t, "job-1.1.0")
		return j != nil && j.Result == protocol.ResultRolledBack && site.running() == "1.0.0"
	})
	// The app was down (staging is journaled after the stop), and the
	// agent tried to recover while the journal still failed.
	refused := fault.refusedWrites()
	if refused[0] != "job job-1.1.0 to staging" || !strings.HasSuffix(refused[len(refused)-1], " attempts") {
		t.Errorf("refused journal writes: %q", refused)
	}
}

// TestJournalFailureDuringDownload: the download fails (the disk is full)
// and so does journaling the failure. Once the journal can be written
// again the running agent takes the job up: it is retried from its
// download, and succeeds.
func TestJournalFailureDuringDownload(t *testing.T) {
	srv := newAgentServer(t, "tok-1")
	site := newAgentSite(t, srv, "tok-1")
	fault := &journalFault{trigger: "job-1.1.0 to failed", recoveries: 2}
	site.fault = fault.check
	srv.assign(site.release(t, "1.0.0"))
	site.start(t)
	await(t, "1.0.0 runs", func() bool { return site.ended(t, "job-1.0.0") != nil && site.running() == "1.0.0" })

	a := site.release(t, "1.1.0")
	site.fetcher.mu.Lock()
	site.fetcher.failNext = errors.New("write " + filepath.Join(site.cfg.DataDir, "downloads", "x.part") + ": no space left on device")
	site.fetcher.mu.Unlock()
	srv.assign(a)
	await(t, "the job is retried and 1.1.0 runs", func() bool {
		j := site.ended(t, a.JobID)
		return j != nil && j.Result == protocol.ResultSucceeded && site.running() == "1.1.0"
	})
	if refused := fault.refusedWrites(); refused[0] != "job job-1.1.0 to failed" || !strings.HasSuffix(refused[len(refused)-1], " attempts") {
		t.Errorf("refused journal writes: %q", refused)
	}
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

// TestEnrolledLogLine: the agent logs its enrollment once, naming the
// site once (the runner's logger already carries it).
func TestEnrolledLogLine(t *testing.T) {
	srv := newAgentServer(t, "tok-1")
	site := newAgentSite(t, srv, "tok-1")
	site.start(t)
	await(t, "enrolled", func() bool { _, c := site.status(t); return c.Reachable })
	lines := site.log.Lines(`msg="enrolled;`)
	if len(lines) != 1 {
		t.Fatalf("%d enrollment lines in the log, want 1: %q", len(lines), lines)
	}
	if n := strings.Count(lines[0], " site="); n != 1 || !strings.Contains(lines[0], " site=acme-prod") {
		t.Errorf("the enrollment line names the site %d times, want once: %s", n, lines[0])
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

// TestRootMismatchAtStart: a root_sha256 that does not pin the server's
// root is found when the agent starts, not at the first job: status and
// the log say both hashes and what to do, and check-ins go on.
func TestRootMismatchAtStart(t *testing.T) {
	srv := newAgentServer(t, "tok-1")
	srv.root = []byte(`{"signed":{"_type":"root"},"signatures":[]}`)
	sum := sha256.Sum256(srv.root)
	site := newAgentSite(t, srv, "tok-1")
	site.start(t)
	want := fmt.Sprintf("the server's root.json has sha256 %s, the config pins %s: fix root_sha256 in the config (the server prints it: updateserver root sha256)", hex.EncodeToString(sum[:]), site.cfg.RootSHA256)
	await(t, "status says root_sha256 is wrong", func() bool {
		_, c := site.status(t)
		return c.RootError == want
	})
	await(t, "the agent checks in", func() bool {
		_, c := site.status(t)
		return c.Reachable
	})
}
