package fleet

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/fault"
	"github.com/dropless/dropless/updateserver/internal/store"
)

// TestSupersede: a new upgrade of a site's product supersedes the pending
// job no agent has picked up, and is refused while the agent has one; a
// job of the site's other product is neither superseded nor in the way.
func TestSupersede(t *testing.T) {
	tests := []struct {
		name string
		// before runs between the first upgrade (job first) and the second.
		before      func(tf *testFleet, first string)
		req         protocol.UpgradeRequest
		wantRefused bool
		wantFirst   string // first's result afterwards
	}{
		{name: "pending, not handed out: superseded", before: func(*testFleet, string) {},
			req: protocol.UpgradeRequest{Site: "s1", To: "1.2.0"}, wantFirst: protocol.ResultFailed},
		{name: "handed out in a check-in: refused", before: func(tf *testFleet, _ string) {
			tf.checkin("s1", protocol.CheckinRequest{InstalledVersion: "1.0.0", State: protocol.StateIdle})
		}, req: protocol.UpgradeRequest{Site: "s1", To: "1.2.0"}, wantRefused: true, wantFirst: protocol.ResultPending},
		{name: "reported by the agent's events: refused", before: func(tf *testFleet, first string) {
			tf.events("s1", first, 1, "downloading")
		}, req: protocol.UpgradeRequest{Site: "s1", To: "1.2.0"}, wantRefused: true, wantFirst: protocol.ResultRunning},
		{name: "reported working in a check-in: refused", before: func(tf *testFleet, first string) {
			tf.checkin("s1", protocol.CheckinRequest{InstalledVersion: "1.0.0", State: protocol.StateDownloading, Job: &protocol.JobStatus{ID: first, State: protocol.StateDownloading}})
		}, req: protocol.UpgradeRequest{Site: "s1", To: "1.2.0"}, wantRefused: true, wantFirst: protocol.ResultPending},
		{name: "the agent's own upgrade leaves the product's job alone", before: func(tf *testFleet, _ string) {
			tf.checkin("s1", protocol.CheckinRequest{InstalledVersion: "1.0.0", AgentVersion: "0.9.0", State: protocol.StateIdle})
		}, req: protocol.UpgradeRequest{Site: "s1", Product: AgentProduct, To: "0.9.1"}, wantFirst: protocol.ResultPending},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tf := newTestFleet(t)
			for _, v := range []string{"1.0.0", "1.1.0", "1.2.0"} {
				tf.publish("acme-erp", v, "")
			}
			tf.publish(AgentProduct, "0.9.1", "")
			tf.enroll("s1", "acme", "1.0.0", "0.9.0")
			first := tf.upgrade(protocol.UpgradeRequest{Site: "s1", To: "1.1.0"})[0].ID
			tt.before(tf, first)
			resp, err := tf.Upgrade(tf.ctx, tt.req, "support")
			if tt.wantRefused {
				if fe, ok := fault.As(err); !ok || fe.Kind != fault.Conflict {
					t.Fatalf("second upgrade: %v, want a conflict", err)
				}
				if p, _ := tf.History(tf.ctx, "s1", "", 50); len(p.Jobs) != 1 {
					t.Errorf("a refused upgrade left %d jobs, want 1", len(p.Jobs))
				}
				if n := len(tf.ends(first)); n != 0 {
					t.Errorf("the job in the agent's hands emitted %d JobEnded", n)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			j := tf.job("s1", first)
			if j.Result != tt.wantFirst {
				t.Fatalf("first job %s, want %s", j.Result, tt.wantFirst)
			}
			if tt.wantFirst == protocol.ResultFailed {
				tf.wantJob("s1", first, protocol.ResultFailed, "cancelled: superseded by job "+resp.Jobs[0].ID)
				tf.wantEndedOnce(first, protocol.ResultFailed, "cancelled: superseded by job "+resp.Jobs[0].ID)
			}
		})
	}
}

// TestHopChain: a multi-hop upgrade's hops run in order: when a hop ends
// without success the later hops are cancelled, each with its JobEnded;
// when it succeeds the next is handed out, with a fresh clock.
func TestHopChain(t *testing.T) {
	tests := []struct {
		name     string
		steps    []string // the first hop's events
		wantLast string   // the second hop's result
		reason   string
	}{
		{name: "rolled back", steps: []string{"downloading", "rolling_back: health check failed: 503", "rolled_back: 1.0.0 runs again"},
			wantLast: protocol.ResultFailed, reason: "cancelled: the step before it (%s) ended rolled_back"},
		{name: "failed", steps: []string{"downloading", "failed: rollback failed: disk full"},
			wantLast: protocol.ResultFailed, reason: "cancelled: the step before it (%s) ended failed"},
		{name: "succeeded", steps: []string{"downloading", "committed"}, wantLast: protocol.ResultPending},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tf := newTestFleet(t)
			tf.publish("acme-erp", "1.0.0", "")
			tf.publish("acme-erp", "1.1.0", ">= 1.0, < 1.1")
			tf.publish("acme-erp", "1.2.0", ">= 1.1, < 1.2")
			tf.enroll("s1", "acme", "1.0.0", "0.9.0")
			jobs := tf.upgrade(protocol.UpgradeRequest{Site: "s1", To: "1.2.0"})
			if len(jobs) != 2 {
				t.Fatalf("jobs %s, want two hops", ids(jobs))
			}
			hop1, hop2 := jobs[0].ID, jobs[1].ID
			if a := tf.checkin("s1", protocol.CheckinRequest{InstalledVersion: "1.0.0", State: protocol.StateIdle}); a == nil || a.JobID != hop1 {
				t.Fatalf("first check-in got %+v, want hop 1", a)
			}
			tf.advance(testTimeout - time.Second) // the second hop waits behind the first: its clock has not started
			tf.events("s1", hop1, 1, tt.steps...)
			if got := tf.job("s1", hop2).Result; got != tt.wantLast {
				t.Fatalf("hop 2 %s, want %s", got, tt.wantLast)
			}
			if tt.wantLast == protocol.ResultFailed {
				reason := fmt.Sprintf(tt.reason, hop1)
				tf.wantJob("s1", hop2, protocol.ResultFailed, reason)
				tf.wantEndedOnce(hop2, protocol.ResultFailed, reason)
				return
			}
			// The first hop's success starts the second's clock: the
			// sweeper does not time it out for waiting behind hop 1.
			tf.advance(testTimeout / 2)
			if err := tf.SweepStaleJobs(tf.ctx); err != nil {
				t.Fatal(err)
			}
			if a := tf.checkin("s1", protocol.CheckinRequest{InstalledVersion: "1.1.0", State: protocol.StateIdle, Job: &protocol.JobStatus{ID: hop1, Result: protocol.ResultSucceeded}}); a == nil || a.JobID != hop2 {
				t.Fatalf("check-in after hop 1 got %+v, want hop 2", a)
			}
			tf.wantEndedOnce(hop1, protocol.ResultSucceeded, "")
			if n := len(tf.ends(hop2)); n != 0 {
				t.Errorf("hop 2 emitted %d JobEnded", n)
			}
		})
	}
}

// TestTimeout: a job without progress for the job timeout ends failed,
// "timed out", once; a job waiting behind another job of its site (the
// agent's own upgrade behind the product's) is not stale; the agent's
// late report replaces the timeout and emits an amending JobEnded, and
// cancels nothing created since.
func TestTimeout(t *testing.T) {
	tf := newTestFleet(t)
	tf.publish("acme-erp", "1.0.0", "")
	tf.publish("acme-erp", "1.1.0", "")
	tf.publish(AgentProduct, "0.9.1", "")
	tf.enroll("s1", "acme", "1.0.0", "0.9.0")
	app := tf.upgrade(protocol.UpgradeRequest{Site: "s1", To: "1.1.0"})[0].ID
	tf.advance(testTimeout / 2)
	agent := tf.upgrade(protocol.UpgradeRequest{Site: "s1", Product: AgentProduct, To: "0.9.1"})[0].ID
	if a := tf.checkin("s1", protocol.CheckinRequest{InstalledVersion: "1.0.0", AgentVersion: "0.9.0", State: protocol.StateIdle}); a == nil || a.JobID != app {
		t.Fatalf("check-in got %+v, want the oldest open job, the product's", a)
	}
	tf.events("s1", app, 1, "downloading")
	tf.advance(testTimeout - time.Second)
	sweep(t, tf)
	tf.wantJob("s1", app, protocol.ResultRunning, "")

	tf.advance(2 * time.Second)
	sweep(t, tf)
	tf.wantJob("s1", app, protocol.ResultFailed, "timed out")
	tf.wantEndedOnce(app, protocol.ResultFailed, "timed out")
	// The agent's job waited behind it: its clock starts now.
	tf.advance(testTimeout - time.Second)
	sweep(t, tf)
	tf.wantJob("s1", agent, protocol.ResultPending, "")
	sweep(t, tf)
	if n := len(tf.ends(app)); n != 1 {
		t.Fatalf("sweeping again emitted %d JobEnded for the timed-out job, want 1", n)
	}

	// A new upgrade of the product, then the late report of the old job.
	tf.publish("acme-erp", "1.2.0", "")
	next := tf.upgrade(protocol.UpgradeRequest{Site: "s1", To: "1.2.0"})[0].ID
	tf.events("s1", app, 2, "rolling_back: migration 0003 failed", "rolled_back: 1.0.0 runs again")
	tf.wantJob("s1", app, protocol.ResultRolledBack, "migration 0003 failed (1.0.0 runs again)")
	ends := tf.ends(app)
	if len(ends) != 2 || !ends[1].Amends || ends[1].Result != protocol.ResultRolledBack {
		t.Fatalf("JobEnded of the late report: %+v, want a second one that amends the timeout", ends)
	}
	tf.wantJob("s1", next, protocol.ResultPending, "")
	tf.wantJob("s1", agent, protocol.ResultPending, "")
	if n := len(tf.ends(next)); n != 0 {
		t.Errorf("the late report ended the newer job (%d JobEnded)", n)
	}
}

// TestTimeoutWaitsForTheWindow: a job waiting for its site's window (or
// a freeze) does not time out while it may not start; its clock starts
// when the window opens, and an agent that does not pick it up within
// the job timeout from then fails it.
func TestTimeoutWaitsForTheWindow(t *testing.T) {
	tf := newTestFleet(t) // Monday 2026-03-02 10:00 UTC
	tf.publish("acme-erp", "1.0.0", "")
	tf.publish("acme-erp", "1.1.0", "")
	tf.enroll("s1", "acme", "1.0.0", "0.9.0")
	if err := tf.Store.SetWindow(tf.ctx, tf.now(), store.ScopeSite, "s1", []string{"Sat 22:00-Sun 04:00"}, "UTC", store.Audit{Actor: "test", Action: "window.set"}); err != nil {
		t.Fatal(err)
	}
	id := tf.upgrade(protocol.UpgradeRequest{Site: "s1", To: "1.1.0"})[0].ID
	for range 3 { // hours, then days, of a closed window
		tf.advance(2 * testTimeout)
		sweep(t, tf)
		tf.wantJob("s1", id, protocol.ResultPending, "")
	}
	// Saturday 22:00 + most of the job timeout: still inside its time.
	opens := time.Date(2026, 3, 7, 22, 0, 0, 0, time.UTC)
	tf.advance(opens.Add(testTimeout - time.Second).Sub(tf.now()))
	sweep(t, tf)
	tf.wantJob("s1", id, protocol.ResultPending, "")
	tf.advance(2 * time.Second)
	sweep(t, tf)
	tf.wantJob("s1", id, protocol.ResultFailed, "timed out")
}

func sweep(t *testing.T, tf *testFleet) {
	t.Helper()
	if err := tf.SweepStaleJobs(tf.ctx); err != nil {
		t.Fatal(err)
	}
}

// TestReason: how a job's result and reason follow from what its agent
// reports, whatever arrives first.
func TestReason(t *testing.T) {
	tests := []struct {
		name       string
		checkin    string // a result the check-in reports before the events ("" for none)
		steps      []string
		wantResult string
		wantReason string
	}{
		{name: "committed", steps: []string{"downloading", "committed: 1.1.0 healthy"}, wantResult: protocol.ResultSucceeded},
		{name: "rolled back: why, and where it landed", steps: []string{"downloading", "rolling_back: health check: 503", "rolled_back: 1.0.0 runs again"},
			wantResult: protocol.ResultRolledBack, wantReason: "health check: 503 (1.0.0 runs again)"},
		{name: "rolled back without saying why", steps: []string{"downloading", "rolled_back: 1.0.0 runs again"},
			wantResult: protocol.ResultRolledBack, wantReason: "1.0.0 runs again"},
		{name: "the last rolling_back counts", steps: []string{"rolling_back: first", "rolling_back: second", "rolled_back: back"},
			wantResult: protocol.ResultRolledBack, wantReason: "second (back)"},
		{name: "failed", steps: []string{"downloading", "failed: signature check: target not signed"},
			wantResult: protocol.ResultFailed, wantReason: "signature check: target not signed"},
		{name: "check-in first, events bring the reason", checkin: protocol.ResultRolledBack,
			steps:      []string{"rolling_back: health check: 503", "rolled_back: 1.0.0 runs again"},
			wantResult: protocol.ResultRolledBack, wantReason: "health check: 503 (1.0.0 runs again)"},
		{name: "check-in first, its result stands", checkin: protocol.ResultFailed, steps: []string{"committed"},
			wantResult: protocol.ResultFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tf := newTestFleet(t)
			tf.publish("acme-erp", "1.0.0", "")
			tf.publish("acme-erp", "1.1.0", "")
			tf.enroll("s1", "acme", "1.0.0", "0.9.0")
			id := tf.upgrade(protocol.UpgradeRequest{Site: "s1", To: "1.1.0"})[0].ID
			tf.checkin("s1", protocol.CheckinRequest{InstalledVersion: "1.0.0", State: protocol.StateIdle})
			if tt.checkin != "" {
				tf.checkin("s1", protocol.CheckinRequest{InstalledVersion: "1.0.0", State: protocol.StateIdle, Job: &protocol.JobStatus{ID: id, Result: tt.checkin}})
			}
			tf.events("s1", id, 1, tt.steps...)
			tf.events("s1", id, 1, tt.steps...) // delivered twice: no second end
			tf.wantJob("s1", id, tt.wantResult, tt.wantReason)
			ends := tf.ends(id)
			if len(ends) != 1 || ends[0].Result != tt.wantResult {
				t.Fatalf("JobEnded signals %+v, want one, %s", ends, tt.wantResult)
			}
			e := ends[0]
			if e.Site != "s1" || e.Client != "acme" || e.Product != "acme-erp" || e.From != "1.0.0" || e.To != "1.1.0" || e.CreatedBy != "support" {
				t.Errorf("JobEnded %+v does not say which job", e)
			}
		})
	}
}

// TestSignals: each job emits JobCreated once, JobStarted once when its
// agent's first event arrives, and JobEnded once, in that order, only
// for changes that were committed.
func TestSignals(t *testing.T) {
	tf := newTestFleet(t)
	tf.publish("acme-erp", "1.0.0", "")
	tf.publish("acme-erp", "1.1.0", "")
	tf.enroll("s1", "acme", "1.0.0", "0.9.0")
	tf.enroll("s2", "acme", "1.0.0", "0.9.0")
	// A refused upgrade emits nothing: s2 has a job in its agent's hands.
	held := tf.upgrade(protocol.UpgradeRequest{Site: "s2", To: "1.1.0"})[0].ID
	tf.checkin("s2", protocol.CheckinRequest{InstalledVersion: "1.0.0", State: protocol.StateIdle})
	before := len(tf.sent())
	if _, err := tf.Upgrade(tf.ctx, protocol.UpgradeRequest{Client: "acme", To: "1.1.0"}, "support"); err == nil {
		t.Fatal("upgrade of a client with a site busy was not refused")
	}
	if got := tf.sent(); len(got) != before {
		t.Fatalf("a refused upgrade emitted %+v", got[before:])
	}
	tf.events("s2", held, 1, "downloading", "stopping", "committed")
	id := tf.upgrade(protocol.UpgradeRequest{Site: "s1", To: "1.1.0"})[0].ID
	tf.checkin("s1", protocol.CheckinRequest{InstalledVersion: "1.0.0", State: protocol.StateIdle})
	tf.events("s1", id, 1, "downloading")
	tf.events("s1", id, 2, "stopping", "committed")
	var types []JobEventType
	for _, e := range tf.sent() {
		if e.JobID == id {
			types = append(types, e.Type)
		}
	}
	if want := []JobEventType{JobCreated, JobStarted, JobEnded}; fmt.Sprintf("%v", types) != fmt.Sprintf("%v", want) {
		t.Fatalf("signals of one job: %v, want %v", types, want)
	}
}

// newLoggedFleet is a test fleet logging as text into the returned
// buffer, with releases 1.0.0 and 1.1.0 of acme-erp published.
func newLoggedFleet(t *testing.T) (*testFleet, *bytes.Buffer) {
	tf := newTestFleet(t)
	buf := &bytes.Buffer{}
	tf.Log = slog.New(slog.NewTextHandler(buf, nil))
	tf.publish("acme-erp", "1.0.0", "")
	tf.publish("acme-erp", "1.1.0", "")
	return tf, buf
}

// TestJobLogLines: an operator tailing the server's log sees one line
// when a job is created, starts and ends (a rollback as such), with its
// site, job, product, versions, result and reason.
func TestJobLogLines(t *testing.T) {
	tf, buf := newLoggedFleet(t)
	tf.enroll("s1", "acme", "1.0.0", "0.9.0")
	id := tf.upgrade(protocol.UpgradeRequest{Site: "s1", To: "1.1.0"})[0].ID
	tf.checkin("s1", protocol.CheckinRequest{InstalledVersion: "1.0.0", State: protocol.StateIdle})
	tf.events("s1", id, 1, "downloading", "rolling_back: health check: 503", "rolled_back: 1.0.0 runs again")
	job := "site=s1 job=" + id + " product=acme-erp from=1.0.0 to=1.1.0"
	for _, want := range []string{
		`level=INFO msg="job created" ` + job + ` result=pending by=support`,
		`level=INFO msg="job started" ` + job + ` result=running`,
		`level=WARN msg="job rolled back" ` + job + ` result=rolled_back reason="health check: 503 (1.0.0 runs again)"`,
	} {
		if n := strings.Count(buf.String(), want); n != 1 {
			t.Errorf("%d lines with %s in the log:\n%s", n, want, buf.String())
		}
	}
}

// TestManyJobsLogOneLine: a client-wide upgrade of 25 sites logs one
// "jobs created" line with the count and the first sites, not 25; in a
// large batch of ends the successes are counted together and a rollback
// still has its own line.
func TestManyJobsLogOneLine(t *testing.T) {
	tf, buf := newLoggedFleet(t)
	for i := range 25 {
		tf.enroll(fmt.Sprintf("s%02d", i), "acme", "1.0.0", "0.9.0")
	}
	if jobs := tf.upgrade(protocol.UpgradeRequest{Client: "acme", To: "1.1.0"}); len(jobs) != 25 {
		t.Fatalf("%d jobs, want 25", len(jobs))
	}
	log := buf.String()
	want := `level=INFO msg="jobs created" count=25 product=acme-erp to=1.1.0 sites="s00, s01, s02 and 22 more" by=support`
	if n := strings.Count(log, want); n != 1 || strings.Contains(log, `msg="job created"`) {
		t.Errorf("want one line %s and no line per job; the log:\n%s", want, log)
	}

	buf.Reset()
	var evs []JobEvent
	for i := range 12 {
		evs = append(evs, JobEvent{Type: JobEnded, Site: fmt.Sprintf("s%02d", i), JobID: fmt.Sprint("j", i), Product: "acme-erp", From: "1.0.0", To: "1.1.0", Result: protocol.ResultSucceeded})
	}
	evs = append(evs, JobEvent{Type: JobEnded, Site: "s12", JobID: "j12", Product: "acme-erp", From: "1.0.0", To: "1.1.0", Result: protocol.ResultRolledBack, Reason: "health check: 503"})
	logSignals(tf.Log, evs)
	log = buf.String()
	for _, want := range []string{
		`level=INFO msg="jobs succeeded" count=12 product=acme-erp to=1.1.0 sites="s00, s01, s02 and 9 more"`,
		`level=WARN msg="job rolled back" site=s12 job=j12 product=acme-erp from=1.0.0 to=1.1.0 result=rolled_back reason="health check: 503"`,
	} {
		if n := strings.Count(log, want); n != 1 {
			t.Errorf("%d lines %s; the log:\n%s", n, want, log)
		}
	}
	if n := strings.Count(log, "\n"); n != 2 {
		t.Errorf("%d lines, want 2:\n%s", n, log)
	}
}
