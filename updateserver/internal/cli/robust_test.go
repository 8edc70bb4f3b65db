package cli_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/daemon"
)

// TestPickedUpJobIsNeverSuperseded: upgrade --to 5.0.0 --now; upgrade --to
// 4.0.0 --now, back to back, while the agent runs the first job. The
// second is refused (the agent has the first), and history says what the
// agent did: the job it ran, with its own events, ends as it reported.
func TestPickedUpJobIsNeverSuperseded(t *testing.T) {
	s := startServer(t)
	support := s.newToken(protocol.RoleSupport)
	s.publish(t, "3.0.0", "")
	s.publish(t, "4.0.0", ">= 3.0, < 4.0")
	s.publish(t, "5.0.0", ">= 4.0, < 5.0")
	tok := strings.TrimSpace(s.mustCLI(support, "enroll-token", "create", "--client", "acme"))
	a := s.enroll(t, tok, "acme-prod", "acme")
	ctx := context.Background()
	report := protocol.CheckinRequest{InstalledVersion: "3.0.0", State: protocol.StateIdle}
	if _, err := a.Checkin(ctx, report, 0); err != nil {
		t.Fatal(err)
	}

	// The agent long-polls and gets the first hop of the upgrade to 5.0.0.
	got := a.longPoll(t, report, 60*time.Second)
	waitFor(t, func() bool { return s.site(t, support, "acme-prod").LastSeen != nil })
	s.mustCLI(support, "upgrade", "--site", "acme-prod", "--to", "5.0.0", "--now")
	asg := (<-got).Assignment
	if asg == nil || asg.Version != "4.0.0" {
		t.Fatalf("assignment %+v, want the hop to 4.0.0", asg)
	}

	// Back to back: support changes its mind before the agent reported
	// anything. The agent already has the job: refused, naming it.
	r := s.cli(support, "upgrade", "--site", "acme-prod", "--to", "4.0.0", "--now")
	want := fmt.Sprintf("site acme-prod is running job %s (3.0.0 -> 4.0.0): wait for it to end", asg.JobID)
	if r.code != 1 || !strings.Contains(r.stderr, want) {
		t.Fatalf("second upgrade: exit %d %q, want %q", r.code, r.stderr, want)
	}

	// The agent runs its job to the end and reports it.
	var evs []protocol.Event
	for i, st := range []string{"downloading", "verified", "preflight", "stopping", "staging", "switching", "starting", "health_check", "committed"} {
		evs = append(evs, protocol.Event{JobID: asg.JobID, Seq: int64(i + 1), State: st, At: time.Now()})
	}
	if _, err := a.SendEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	report.InstalledVersion = "4.0.0"
	report.Job = &protocol.JobStatus{ID: asg.JobID, From: "3.0.0", To: "4.0.0", State: "committed", Result: protocol.ResultSucceeded}
	resp, err := a.Checkin(ctx, report, 0)
	if err != nil {
		t.Fatal(err)
	}
	h := s.history(t, support, "acme-prod")
	if len(h) != 2 {
		t.Fatalf("history has %d jobs, want the two hops: %+v", len(h), h)
	}
	ran, next := h[1], h[0]
	if ran.ID != asg.JobID || ran.Result != protocol.ResultSucceeded || ran.Reason != "" || len(ran.Events) != 9 || ran.From != "3.0.0" || ran.To != "4.0.0" {
		t.Errorf("the job the agent ran: %s %s -> %s %s %q with %d events", ran.ID, ran.From, ran.To, ran.Result, ran.Reason, len(ran.Events))
	}
	// The next hop was not run, so nothing says it was: it is the
	// agent's next assignment.
	if next.From != "4.0.0" || next.To != "5.0.0" || next.Result != protocol.ResultPending || len(next.Events) != 0 {
		t.Errorf("the next hop: %s -> %s %s with %d events", next.From, next.To, next.Result, len(next.Events))
	}
	if resp.Assignment == nil || resp.Assignment.JobID != next.ID {
		t.Errorf("assignment after the first hop: %+v, want %s", resp.Assignment, next.ID)
	}
}

// TestPendingJobIsSupersededAtomically: a job no agent was handed yet is
// superseded by a new upgrade; a check-in racing with the upgrade either
// gets the old job (and the upgrade is refused) or the new one, never the
// old one while history says it was superseded.
func TestPendingJobIsSupersededAtomically(t *testing.T) {
	s := startServer(t)
	support := s.newToken(protocol.RoleSupport)
	s.publish(t, "1.0.0", "")
	s.publish(t, "1.1.0", "")
	s.publish(t, "1.2.0", "")
	tok := strings.TrimSpace(s.mustCLI(support, "enroll-token", "create", "--client", "acme"))
	a := s.enroll(t, tok, "acme-prod", "acme")
	ctx := context.Background()
	report := protocol.CheckinRequest{InstalledVersion: "1.0.0", State: protocol.StateIdle}

	// Not handed out: superseded.
	s.mustCLI(support, "upgrade", "--site", "acme-prod", "--to", "1.1.0")
	s.mustCLI(support, "upgrade", "--site", "acme-prod", "--to", "1.2.0")
	h := s.history(t, support, "acme-prod")
	if len(h) != 2 || h[1].Result != protocol.ResultFailed || !strings.Contains(h[1].Reason, "superseded by job "+h[0].ID) || h[0].Result != protocol.ResultPending {
		t.Fatalf("history after superseding a pending job: %+v", h)
	}

	// Racing: each round, a pending job, then a check-in and an upgrade
	// at once.
	to := []string{"1.1.0", "1.2.0"}
	for i := range 8 {
		old := s.history(t, support, "acme-prod")[0]
		var wg sync.WaitGroup
		var resp protocol.CheckinResponse
		var cerr error
		var up result
		wg.Add(2)
		go func() { defer wg.Done(); resp, cerr = a.Checkin(ctx, report, 0) }()
		go func() { defer wg.Done(); up = s.cli(support, "upgrade", "--site", "acme-prod", "--to", to[i%2]) }()
		wg.Wait()
		if cerr != nil || resp.Assignment == nil {
			t.Fatalf("round %d: check-in %+v %v", i, resp.Assignment, cerr)
		}
		gotOld := resp.Assignment.JobID == old.ID
		if gotOld != (up.code != 0) {
			t.Fatalf("round %d: agent got the old job %t, upgrade exit %d %q", i, gotOld, up.code, up.stderr)
		}
		j := s.history(t, support, "acme-prod")
		for _, job := range j {
			if job.ID == resp.Assignment.JobID && job.Result != protocol.ResultPending {
				t.Fatalf("round %d: the agent was handed job %s, which history shows %s: %s", i, job.ID, job.Result, job.Reason)
			}
		}
		// The agent ends the job it has (rolled back), so the next round
		// starts from a pending job again.
		a.SendEvents(ctx, []protocol.Event{{JobID: resp.Assignment.JobID, Seq: 1, State: "rolled_back", Message: "test", At: time.Now()}})
		s.mustCLI(support, "upgrade", "--site", "acme-prod", "--to", to[(i+1)%2])
	}
}

// TestCheckinReportsNoOtherJobsResult: a check-in reporting the version of
// a pending job's target does not end that job (the agent did not run
// it), and a job the sweeper timed out ends as the agent reports it when
// its report arrives late.
func TestCheckinReportsNoOtherJobsResult(t *testing.T) {
	s := startServer(t, func(c *daemon.Config) { c.JobTimeout = 300 * time.Millisecond })
	support := s.newToken(protocol.RoleSupport)
	s.publish(t, "1.0.0", "")
	s.publish(t, "1.1.0", "")
	tok := strings.TrimSpace(s.mustCLI(support, "enroll-token", "create", "--client", "acme"))
	a := s.enroll(t, tok, "acme-prod", "acme")
	ctx := context.Background()
	a.Checkin(ctx, protocol.CheckinRequest{InstalledVersion: "1.0.0", State: protocol.StateIdle}, 0)
	s.mustCLI(support, "upgrade", "--site", "acme-prod", "--to", "1.1.0", "--now")
	// Someone installed 1.1.0 by hand; the agent reports it, and no job.
	resp, err := a.Checkin(ctx, protocol.CheckinRequest{InstalledVersion: "1.1.0", State: protocol.StateIdle}, 0)
	if err != nil || resp.Assignment == nil {
		t.Fatalf("check-in: %+v %v", resp.Assignment, err)
	}
	if j := s.history(t, support, "acme-prod")[0]; j.Result == protocol.ResultSucceeded && len(j.Events) == 0 {
		t.Fatalf("job %s shows SUCCEEDED with no events: the agent never ran it", j.ID)
	}
	// The agent runs it, but its reports reach the server only after the
	// job timed out.
	id := resp.Assignment.JobID
	waitFor(t, func() bool { return s.history(t, support, "acme-prod")[0].Reason == "timed out" })
	a.SendEvents(ctx, []protocol.Event{
		{JobID: id, Seq: 1, State: "downloading", At: time.Now()},
		{JobID: id, Seq: 2, State: "committed", Message: "1.1.0 is already installed: nothing to do", At: time.Now()},
	})
	if j := s.history(t, support, "acme-prod")[0]; j.ID != id || j.Result != protocol.ResultSucceeded || j.Reason != "" {
		t.Fatalf("after the agent's late report: %s %s %q, want succeeded", j.ID, j.Result, j.Reason)
	}
}

// TestEventFloodIsBounded: an agent posting thousands of 12 KB events for
// its job fills neither the database nor the server's memory: the job
// keeps its first and newest events, messages are cut with a marker, and
// history says how many were dropped.
func TestEventFloodIsBounded(t *testing.T) {
	s := startServer(t)
	support := s.newToken(protocol.RoleSupport)
	s.publish(t, "1.0.0", "")
	s.publish(t, "1.1.0", "")
	tok := strings.TrimSpace(s.mustCLI(support, "enroll-token", "create", "--client", "acme"))
	a := s.enroll(t, tok, "acme-prod", "acme")
	ctx := context.Background()
	a.Checkin(ctx, protocol.CheckinRequest{InstalledVersion: "1.0.0", State: protocol.StateIdle}, 0)
	s.mustCLI(support, "upgrade", "--site", "acme-prod", "--to", "1.1.0", "--now")
	resp, err := a.Checkin(ctx, protocol.CheckinRequest{InstalledVersion: "1.0.0", State: protocol.StateIdle}, 0)
	if err != nil || resp.Assignment == nil {
		t.Fatal(resp, err)
	}
	id := resp.Assignment.JobID
	msg := strings.Repeat("x", 12<<10)
	batch := func(from, n int) []protocol.Event {
		evs := make([]protocol.Event, n)
		for i := range evs {
			evs[i] = protocol.Event{JobID: id, Seq: int64(from + i), State: "downloading", Message: msg, At: time.Now()}
		}
		return evs
	}
	// 500 such events are 6 MB: more than a request may carry.
	if _, err := a.SendEvents(ctx, batch(1, 500)); err == nil || !strings.Contains(err.Error(), "413") {
		t.Fatalf("a 6 MB batch: %v, want 413", err)
	}
	dbBefore := dbSize(t, s)
	const per = 160 // 2 MB
	for b := range 25 {
		if r, err := a.SendEvents(ctx, batch(1+per*b, per)); err != nil || r.Accepted != per {
			t.Fatalf("batch %d: %+v %v", b, r, err)
		}
	}
	// A batch delivered again after its events were dropped stays dropped.
	if r, err := a.SendEvents(ctx, batch(1, per)); err != nil || r.Accepted != 0 {
		t.Fatalf("old batch again: %+v %v", r, err)
	}
	j := s.history(t, support, "acme-prod")[0]
	if len(j.Events) != 500 || j.EventsDropped != 3500 {
		t.Fatalf("job keeps %d events, %d dropped; want 500 and 3500", len(j.Events), j.EventsDropped)
	}
	if j.Events[0].Seq != 1 || j.Events[1].Seq != 3502 || j.Events[499].Seq != 4000 {
		t.Errorf("kept seqs %d, %d ... %d; want the first and the newest", j.Events[0].Seq, j.Events[1].Seq, j.Events[499].Seq)
	}
	m := j.Events[499].Message
	if len(m) > protocol.KeepMessage || !strings.HasSuffix(m, "… (truncated, 12288 bytes)") {
		t.Errorf("message of %d bytes ends %q", len(m), m[max(0, len(m)-40):])
	}
	// 4000 events of 12 KB are 48 MB. Kept: 500 of 2 KiB, with the
	// write-ahead log (a few MB until a checkpoint) and free pages.
	if grew := dbSize(t, s) - dbBefore; grew > 16<<20 {
		t.Errorf("the database grew by %d KB", grew>>10)
	}
	out := s.mustCLI(support, "history", "--site", "acme-prod")
	if !strings.Contains(out, "3500 events dropped") {
		t.Errorf("history does not say events were dropped:\n%.600s", out)
	}
}

func dbSize(t *testing.T, s *server) int64 {
	t.Helper()
	var n int64
	for _, f := range []string{daemon.DBFile, daemon.DBFile + "-wal"} {
		if fi, err := os.Stat(filepath.Join(s.Data, f)); err == nil {
			n += fi.Size()
		}
	}
	return n
}

// TestHistoryPages: history shows the newest --limit jobs and the command
// for the next page, which continues where the first ended.
func TestHistoryPages(t *testing.T) {
	s := startServer(t)
	support := s.newToken(protocol.RoleSupport)
	versions := []string{"1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0"}
	for _, v := range versions {
		s.publish(t, v, "")
	}
	tok := strings.TrimSpace(s.mustCLI(support, "enroll-token", "create", "--client", "acme"))
	a := s.enroll(t, tok, "acme-prod", "acme")
	ctx := context.Background()
	report := protocol.CheckinRequest{InstalledVersion: "1.0.0", State: protocol.StateIdle}
	a.Checkin(ctx, report, 0)
	var ids []string // oldest first
	for _, v := range versions[1:] {
		s.mustCLI(support, "upgrade", "--site", "acme-prod", "--to", v)
		resp, err := a.Checkin(ctx, report, 0)
		if err != nil || resp.Assignment == nil {
			t.Fatal(resp, err)
		}
		ids = append(ids, resp.Assignment.JobID)
		report.InstalledVersion = v
		report.Job = &protocol.JobStatus{ID: resp.Assignment.JobID, State: "committed", Result: protocol.ResultSucceeded}
		a.Checkin(ctx, report, 0)
	}
	out := s.mustCLI(support, "history", "--site", "acme-prod", "--limit", "3")
	for i, id := range ids {
		if shown := strings.Contains(out, id); shown != (i >= 1) {
			t.Errorf("job %d (%s) shown %t in the first page:\n%s", i, id, shown, out)
		}
	}
	nextCmd := "updateserver history --site acme-prod --before " + ids[1]
	if !strings.Contains(out, nextCmd) {
		t.Fatalf("the first page does not end with %q:\n%s", nextCmd, out)
	}
	var page []protocol.Job
	if err := json.Unmarshal([]byte(s.mustCLI(support, "history", "--site", "acme-prod", "--limit", "3", "--before", ids[1], "--json")), &page); err != nil {
		t.Fatal(err)
	}
	if len(page) != 1 || page[0].ID != ids[0] {
		t.Fatalf("second page: %+v, want job %s", page, ids[0])
	}
	if r := s.cli(support, "history", "--site", "acme-prod", "--limit", "0"); r.code != 2 {
		t.Errorf("--limit 0: exit %d %q", r.code, r.stderr)
	}
	if r := s.cli(support, "history", "--site", "acme-prod", "--before", "job-nope"); r.code != 1 || !strings.Contains(r.stderr, "not a job of site acme-prod") {
		t.Errorf("--before an unknown job: exit %d %q", r.code, r.stderr)
	}
}
