package fleet

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/fault"
	"github.com/dropless/dropless/updateserver/internal/store"
	"github.com/dropless/dropless/updateserver/internal/store/storetest"
)

// TestClientUpgradeWakesEveryLongPoll: a client-wide upgrade of more
// sites than one batched read holds (store's IN lists) reaches every
// long-polling check-in of the client with its own site's job, and each
// job is recorded as handed out before its answer returns: a newer
// upgrade of any of those sites is refused (a picked-up job is never
// superseded), while a site that was not long-polling keeps its job
// pending and is superseded.
func TestClientUpgradeWakesEveryLongPoll(t *testing.T) {
	const n = 520
	tf := newTestFleet(t)
	tf.publish("acme-erp", "1.0.0", "")
	tf.publish("acme-erp", "1.1.0", "")
	tf.publish("acme-erp", "1.2.0", "")
	if _, err := tf.Store.CreateEnrollToken(tf.ctx, tf.now(), store.NewEnrollToken{Secret: "dle_many", Client: "acme", ExpiresAt: tf.now().Add(time.Hour), Uses: n + 1, By: "test"}); err != nil {
		t.Fatal(err)
	}
	names := make([]string, n+1)
	report := protocol.CheckinRequest{InstalledVersion: "1.0.0", AgentVersion: "1.0.0", State: protocol.StateIdle}
	errs := make(chan error, n+1)
	var wg sync.WaitGroup
	for i := range names {
		names[i] = fmt.Sprintf("s%04d", i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := tf.Store.Enroll(tf.ctx, tf.now(), "dle_many", protocol.EnrollRequest{Site: names[i], Client: "acme", Product: "acme-erp"}, "dla_"+names[i]); err != nil {
				errs <- err
				return
			}
			if _, err := tf.Checkin(tf.ctx, names[i], report, 0); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Every site but the last long-polls.
	got := make([]*protocol.Assignment, n)
	failed := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := tf.Checkin(tf.ctx, names[i], report, time.Minute)
			if err != nil {
				failed <- err
			}
			got[i] = resp.Assignment
		}()
	}
	for tf.hub.waiting() < n {
		time.Sleep(10 * time.Millisecond)
	}
	jobs := tf.upgrade(protocol.UpgradeRequest{Client: "acme", To: "1.1.0", Now: true})
	wg.Wait()
	close(failed)
	for err := range failed {
		t.Fatal(err)
	}
	if len(jobs) != n+1 {
		t.Fatalf("%d jobs, want one per site (%d)", len(jobs), n+1)
	}
	for i, a := range got {
		if a == nil || a.JobID != jobs[i].ID || jobs[i].Site != names[i] || a.Version != "1.1.0" {
			t.Fatalf("%s got %+v, want its job %s to 1.1.0", names[i], a, jobs[i].ID)
		}
		open, err := tf.Store.OpenJob(tf.ctx, names[i])
		if err != nil || open.Job.ID != a.JobID || !open.HandedOut {
			t.Fatalf("%s: open job %s handed out %t (%v), want %s handed out", names[i], open.Job.ID, open.HandedOut, err, a.JobID)
		}
	}
	_, err := tf.Upgrade(tf.ctx, protocol.UpgradeRequest{Site: names[n/2], To: "1.2.0"}, "support")
	if fe, ok := fault.As(err); !ok || fe.Kind != fault.Conflict {
		t.Errorf("upgrading a site whose job was handed out: %v, want a conflict", err)
	}
	last := names[n]
	newer := tf.upgrade(protocol.UpgradeRequest{Site: last, To: "1.2.0"})
	tf.wantJob(last, jobs[n].ID, protocol.ResultFailed, "cancelled: superseded by job "+newer[0].ID)
}

// TestHandOutOfASupersededJob: a long-poll woken with a job that a newer
// upgrade superseded before the hand-out was recorded does not hand it
// out: the batched record checks each job is still its site's oldest open
// one.
func TestHandOutOfASupersededJob(t *testing.T) {
	tf := newTestFleet(t)
	tf.publish("acme-erp", "1.0.0", "")
	tf.publish("acme-erp", "1.1.0", "")
	tf.publish("acme-erp", "1.2.0", "")
	tf.enroll("s1", "acme", "1.0.0", "1.0.0")
	tf.enroll("s2", "acme", "1.0.0", "1.0.0")
	first := tf.upgrade(protocol.UpgradeRequest{Client: "acme", To: "1.1.0"})
	tf.upgrade(protocol.UpgradeRequest{Site: "s1", To: "1.2.0"})
	ok, err := tf.pickUpBatch(tf.ctx, []*pickUpReq{{site: "s1", id: first[0].ID}, {site: "s2", id: first[1].ID}})
	if err != nil {
		t.Fatal(err)
	}
	if ok[0] || !ok[1] {
		t.Fatalf("hand-outs %v: want s1's superseded job refused and s2's recorded", ok)
	}
	if open, err := tf.Store.OpenJob(tf.ctx, "s2"); err != nil || !open.HandedOut {
		t.Errorf("s2's job handed out %t (%v), want recorded", open.HandedOut, err)
	}
	if open, err := tf.Store.OpenJob(tf.ctx, "s1"); err != nil || open.HandedOut || errors.Is(err, store.ErrNotFound) {
		t.Errorf("s1's newer job handed out %t (%v), want pending, not handed out", open.HandedOut, err)
	}
}

// TestHandOutRecordedWithTheJob: an upgrade of a site whose long-poll
// this server holds records the hand-out in the transaction that creates
// the job (the woken call answers with no write of its own). Should that
// answer never reach the agent (here the long-poll is held and never
// answers, as when the server dies right after the commit), the agent is
// handed the job at its next check-in, through another replica or after
// a restart, every time until it reports on it, and the job, in its
// agent's hands, is not superseded. A held site whose window is closed,
// and a site not held, keep their jobs pending.
func TestHandOutRecordedWithTheJob(t *testing.T) {
	path := storetest.Path(t)
	a := newTestFleetOn(t, path)
	a.publish("acme-erp", "1.0.0", "")
	a.publish("acme-erp", "1.1.0", "")
	a.publish("acme-erp", "1.2.0", "")
	for _, s := range []string{"held", "closed", "away"} {
		a.enroll(s, "acme", "1.0.0", "1.0.0")
	}
	if err := a.Store.SetWindow(a.ctx, a.now(), store.ScopeSite, "closed", []string{"Mon 12:00-13:00"}, "UTC", store.Audit{Actor: "test", Action: "window.set"}); err != nil {
		t.Fatal(err)
	}
	// Long-polls held here whose answers never leave.
	a.hub.subscribe("held")
	a.hub.subscribe("closed")
	jobs := a.upgrade(protocol.UpgradeRequest{Client: "acme", To: "1.1.0"})
	byName := map[string]string{}
	for _, j := range jobs {
		byName[j.Site] = j.ID
	}
	for site, want := range map[string]bool{"held": true, "closed": false, "away": false} {
		open, err := a.Store.OpenJob(a.ctx, site)
		if err != nil || open.Job.ID != byName[site] || open.HandedOut != want {
			t.Errorf("%s: open job %s handed out %t (%v), want %s handed out %t", site, open.Job.ID, open.HandedOut, err, byName[site], want)
		}
	}

	idle := protocol.CheckinRequest{InstalledVersion: "1.0.0", AgentVersion: "1.0.0", State: protocol.StateIdle}
	// Another replica on the same store: the agent's next check-in there,
	// a long-poll, is handed the job at once.
	b := newTestFleetOn(t, path)
	b.Now = a.Now
	resp, err := b.Checkin(b.ctx, "held", idle, time.Hour)
	if err != nil || resp.Assignment == nil || resp.Assignment.JobID != byName["held"] {
		t.Fatalf("replica B answered held's check-in with %+v (%v), want job %s", resp.Assignment, err, byName["held"])
	}
	// A restart: the same store opened again by a new server.
	if err := a.Store.Close(); err != nil {
		t.Fatal(err)
	}
	c := newTestFleetOn(t, path)
	c.Now = a.Now
	if got := c.checkin("held", idle); got == nil || got.JobID != byName["held"] {
		t.Fatalf("after a restart held was handed %+v, want job %s again (it never reported on it)", got, byName["held"])
	}
	_, err = c.Upgrade(c.ctx, protocol.UpgradeRequest{Site: "held", To: "1.2.0"}, "support")
	if fe, ok := fault.As(err); !ok || fe.Kind != fault.Conflict {
		t.Errorf("upgrading held, whose job was handed out with its creation: %v, want a conflict", err)
	}
	newer := c.upgrade(protocol.UpgradeRequest{Site: "away", To: "1.2.0"})
	c.wantJob("away", byName["away"], protocol.ResultFailed, "cancelled: superseded by job "+newer[0].ID)
	// Once the agent reports the job's end it is not handed out again.
	idle.Job = &protocol.JobStatus{ID: byName["held"], From: "1.0.0", To: "1.1.0", State: protocol.StateCommitted, Result: protocol.ResultSucceeded}
	idle.InstalledVersion = "1.1.0"
	if got := c.checkin("held", idle); got != nil {
		t.Errorf("held reported its job done and was handed %+v, want no assignment", got)
	}
	c.wantJob("held", byName["held"], protocol.ResultSucceeded, "")
}

// TestHandOutHeldOnlyTheNextJob: of an upgrade's jobs, a held long-poll
// is handed the site's next one only: the first hop of a multi-hop
// upgrade (the second waits, not handed out, until the first ends), and
// nothing while another product's job of the site is open (that site is
// not even woken).
func TestHandOutHeldOnlyTheNextJob(t *testing.T) {
	tf := newTestFleet(t)
	tf.publish("acme-erp", "1.0.0", "")
	tf.publish("acme-erp", "1.1.0", ">= 1.0.0")
	tf.publish("acme-erp", "2.0.0", ">= 1.1.0")
	tf.publish(AgentProduct, "0.9.1", "")
	tf.enroll("hops", "acme", "1.0.0", "0.9.0")
	tf.enroll("busy", "acme", "1.0.0", "0.9.0")
	tf.hub.subscribe("busy")
	agentJob := tf.upgrade(protocol.UpgradeRequest{Site: "busy", Product: AgentProduct, To: "0.9.1"})[0].ID
	if open, err := tf.Store.OpenJob(tf.ctx, "busy"); err != nil || open.Job.ID != agentJob || !open.HandedOut {
		t.Fatalf("busy's agent job %s handed out %t (%v), want handed out", open.Job.ID, open.HandedOut, err)
	}

	// Both long-polls held again, then the client's upgrade to 2.0.0.
	tf.hub.subscribe("hops")
	tf.hub.subscribe("busy")
	var hops, busy []string
	for _, j := range tf.upgrade(protocol.UpgradeRequest{Client: "acme", To: "2.0.0"}) {
		if j.Site == "hops" {
			hops = append(hops, j.ID)
		} else {
			busy = append(busy, j.ID)
		}
	}
	if len(hops) != 2 || len(busy) != 2 {
		t.Fatalf("jobs: hops %v, busy %v; want two hops each", hops, busy)
	}
	if open, err := tf.Store.OpenJob(tf.ctx, "hops"); err != nil || open.Job.ID != hops[0] || !open.HandedOut {
		t.Errorf("hops' first hop %s handed out %t (%v), want %s handed out", open.Job.ID, open.HandedOut, err, hops[0])
	}
	if !tf.hub.holds("busy") {
		t.Errorf("busy's long-poll was woken while its agent job is open")
	}
	// The first hop and the agent's job end; the jobs behind them were
	// never handed out.
	tf.events("hops", hops[0], 1, "downloading", "committed")
	tf.events("busy", agentJob, 1, "downloading", "committed")
	for site, want := range map[string]string{"hops": hops[1], "busy": busy[0]} {
		if open, err := tf.Store.OpenJob(tf.ctx, site); err != nil || open.Job.ID != want || open.HandedOut {
			t.Errorf("%s: next job %s handed out %t (%v), want %s, not handed out", site, open.Job.ID, open.HandedOut, err, want)
		}
	}
}
