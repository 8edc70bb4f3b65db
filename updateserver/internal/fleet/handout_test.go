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
