package fleet

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/fault"
	"github.com/dropless/dropless/updateserver/internal/store"
)

// waitingReports counts the goroutines whose report waits for the
// store's writer to take it.
func waitingReports() int {
	buf := make([]byte, 1<<23)
	n := 0
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if strings.Contains(g, " [select") && strings.Contains(g, "store.(*Store).WithJobsBatched(") {
			n++
		}
	}
	return n
}

// TestEventReportsOfManySitesTogether: 200 agents report their job's
// events at once, queued behind a busy writer, and the store applies
// them together (a few calls of applyReports, not 200 transactions),
// with each report's own answer: every event stored once, each job
// started and ended once (signals and webhook outbox rows), a rollback's
// reason from its rolling_back event, a report sent twice answered as new
// once and as duplicate once, and a report naming another site's job
// refused alone.
func TestEventReportsOfManySitesTogether(t *testing.T) {
	tf := newTestFleet(t)
	tf.publish("acme-erp", "1.1.0", "")
	const n = 200
	sites := make([]string, n)
	for i := range sites {
		sites[i] = fmt.Sprintf("s%03d", i)
		tf.enroll(sites[i], "acme", "1.0.0", "0.9.0")
	}
	if _, err := tf.Store.CreateWebhook(tf.ctx, tf.now(), store.NewWebhook{URL: "http://127.0.0.1:9/h", Secret: "s", By: "test"}); err != nil {
		t.Fatal(err)
	}
	var msgs atomic.Int64
	tf.Outbox = func(tx *store.JobTx, now time.Time, sigs []JobEvent) error {
		var evs []store.OutboxEvent
		for _, s := range sigs {
			evs = append(evs, store.OutboxEvent{ID: fmt.Sprint(msgs.Add(1)), Type: string(s.Type), Body: []byte(s.JobID)})
		}
		return tx.Enqueue(now, evs)
	}
	job := map[string]string{}
	for _, j := range tf.upgrade(protocol.UpgradeRequest{Client: "acme", To: "1.1.0", Now: true}) {
		job[j.Site] = j.ID
	}
	var applied, calls atomic.Int64
	b := tf.eventReports()
	apply := b.Apply
	b.Apply = func(t *store.JobTx, items []any) ([]error, error) {
		applied.Add(int64(len(items)))
		calls.Add(1)
		return apply(t, items)
	}
	report := func(i int) []protocol.Event {
		id, at := job[sites[i]], tf.now()
		if i%10 == 0 {
			return []protocol.Event{{JobID: id, Seq: 1, State: protocol.StateDownloading, At: at},
				{JobID: id, Seq: 2, State: protocol.StateRollingBack, Message: "health check failed", At: at},
				{JobID: id, Seq: 3, State: protocol.StateRolledBack, Message: "restored", At: at}}
		}
		return []protocol.Event{{JobID: id, Seq: 1, State: protocol.StateDownloading, At: at}, {JobID: id, Seq: 2, State: protocol.StateCommitted, At: at}}
	}

	// The writer busy: every report queues behind it.
	hold, held := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tf.Store.WithJobs(tf.ctx, func(*store.JobTx) error { close(held); <-hold; return nil })
	})
	<-held
	answers := make([]protocol.EventsResponse, n+1)
	errs := make([]error, n+2)
	for i := range n {
		wg.Go(func() { answers[i], errs[i] = tf.Events(tf.ctx, sites[i], report(i)) })
	}
	wg.Go(func() { answers[n], errs[n] = tf.Events(tf.ctx, sites[1], report(1)) }) // twice
	// Site 2's report naming site 3's job.
	wg.Go(func() {
		_, errs[n+1] = tf.Events(tf.ctx, sites[2], []protocol.Event{{JobID: job[sites[3]], Seq: 9, State: protocol.StateFailed, At: tf.now()}})
	})
	for waitingReports() < n+2 {
		runtime.Gosched()
	}
	close(hold)
	wg.Wait()

	if fe, ok := fault.As(errs[n+1]); !ok || fe.Kind != fault.Forbidden {
		t.Errorf("a report naming another site's job: %v, want refused (forbidden)", errs[n+1])
	}
	for i := range n + 1 {
		if errs[i] != nil {
			t.Fatalf("report %d: %v", i, errs[i])
		}
	}
	if calls.Load() > 4 || applied.Load() != n+2 {
		t.Errorf("applyReports called %d times with %d reports in all, want the %d reports in a few calls", calls.Load(), applied.Load(), n+2)
	}
	if a, b := answers[1], answers[n]; a.Accepted+b.Accepted != 2 || a.Duplicate+b.Duplicate != 2 || a.Accepted*b.Accepted != 0 {
		t.Errorf("the report sent twice was answered %+v and %+v, want one all new and one all duplicate", a, b)
	}
	for i, site := range sites {
		if i != 1 && (answers[i].Accepted != len(report(i)) || answers[i].Duplicate != 0) {
			t.Errorf("site %s's report answered %+v, want all %d events new", site, answers[i], len(report(i)))
		}
		id := job[site]
		j := tf.job(site, id)
		if evs, err := tf.JobEvents(tf.ctx, id); err != nil || len(evs) != len(report(i)) {
			t.Errorf("job %s: %d events stored (%v), want %d", id, len(evs), err, len(report(i)))
		}
		if j.StartedAt == nil || j.EndedAt == nil {
			t.Errorf("job %s: started %v, ended %v", id, j.StartedAt, j.EndedAt)
		}
		if i%10 == 0 {
			tf.wantJob(site, id, protocol.ResultRolledBack, "health check failed (restored)")
			tf.wantEndedOnce(id, protocol.ResultRolledBack, "health check failed (restored)")
		} else {
			tf.wantJob(site, id, protocol.ResultSucceeded, "")
			tf.wantEndedOnce(id, protocol.ResultSucceeded, "")
		}
	}
	started := map[string]int{}
	for _, e := range tf.sent() {
		if e.Type == JobStarted {
			started[e.JobID]++
		}
	}
	rows := map[string]int{}
	q, err := tf.Store.DB().Query(`SELECT event_type, body FROM webhook_outbox`)
	if err != nil {
		t.Fatal(err)
	}
	for q.Next() {
		var typ string
		var body []byte
		if err := q.Scan(&typ, &body); err != nil {
			t.Fatal(err)
		}
		rows[typ+" "+string(body)]++
	}
	q.Close()
	for _, site := range sites {
		id := job[site]
		if started[id] != 1 {
			t.Errorf("job %s: %d JobStarted signals, want 1", id, started[id])
		}
		for _, typ := range []JobEventType{JobCreated, JobStarted, JobEnded} {
			if got := rows[string(typ)+" "+id]; got != 1 {
				t.Errorf("job %s: %d webhook outbox rows %s, want 1", id, got, typ)
			}
		}
	}
}
