package fleet

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/store"
	"github.com/dropless/dropless/updateserver/internal/store/storetest"
)

// testFleet is a Fleet on a real SQLite store in t.TempDir(), with a
// clock the test moves and a recorder of every signal.
type testFleet struct {
	*Fleet
	t   *testing.T
	ctx context.Context

	mu      sync.Mutex
	clock   time.Time
	signals []JobEvent
}

const testTimeout = 10 * time.Minute

func newTestFleet(t *testing.T) *testFleet {
	t.Helper()
	return newTestFleetOn(t, storetest.Path(t))
}

func newTestFleetOn(t *testing.T, path string) *testFleet {
	t.Helper()
	ctx := context.Background()
	s, err := store.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	tf := &testFleet{t: t, ctx: ctx, clock: time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)}
	tf.Fleet = &Fleet{Store: s, Log: slog.New(slog.NewTextHandler(tWriter{t}, nil)), PollInterval: 30 * time.Second, JobTimeout: testTimeout,
		Now: func() time.Time { tf.mu.Lock(); defer tf.mu.Unlock(); return tf.clock }}
	t.Cleanup(tf.Subscribe(func(e JobEvent) { tf.mu.Lock(); tf.signals = append(tf.signals, e); tf.mu.Unlock() }))
	return tf
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func (tf *testFleet) advance(d time.Duration) {
	tf.mu.Lock()
	tf.clock = tf.clock.Add(d)
	tf.mu.Unlock()
}

// publish publishes product's version, admitting upgrades from
// upgradeFrom.
func (tf *testFleet) publish(product, version, upgradeFrom string) {
	tf.t.Helper()
	r := protocol.Release{Product: product, Version: version, Target: product + "/" + product + "-" + version + ".tar.gz", SHA256: "00", Length: 1,
		UpgradeFrom: upgradeFrom, PublishedAt: tf.now(), PublishedBy: "test"}
	if err := tf.Store.PublishRelease(tf.ctx, store.Publish{Release: r, Audit: store.Audit{Actor: "test", Action: "release.publish"}}); err != nil {
		tf.t.Fatal(err)
	}
}

// enroll enrolls site of client (product acme-erp) and checks it in with
// installed and agent versions.
func (tf *testFleet) enroll(site, client, installed, agent string) {
	tf.t.Helper()
	secret := "dle_" + site
	if _, err := tf.Store.CreateEnrollToken(tf.ctx, tf.now(), store.NewEnrollToken{Secret: secret, Client: client, ExpiresAt: tf.now().Add(time.Hour), Uses: 1, By: "test"}); err != nil {
		tf.t.Fatal(err)
	}
	if _, err := tf.Store.Enroll(tf.ctx, tf.now(), secret, protocol.EnrollRequest{Site: site, Client: client, Product: "acme-erp"}, "dla_"+site); err != nil {
		tf.t.Fatal(err)
	}
	tf.checkin(site, protocol.CheckinRequest{InstalledVersion: installed, AgentVersion: agent, State: protocol.StateIdle})
}

func (tf *testFleet) checkin(site string, req protocol.CheckinRequest) *protocol.Assignment {
	tf.t.Helper()
	resp, err := tf.Checkin(tf.ctx, site, req, 0)
	if err != nil {
		tf.t.Fatalf("check-in of %s: %v", site, err)
	}
	return resp.Assignment
}

func (tf *testFleet) upgrade(req protocol.UpgradeRequest) []protocol.Job {
	tf.t.Helper()
	resp, err := tf.Upgrade(tf.ctx, req, "support")
	if err != nil {
		tf.t.Fatalf("upgrade %+v: %v", req, err)
	}
	return resp.Jobs
}

// events sends the agent's events of job id, numbered from seq, each
// "state" or "state: message".
func (tf *testFleet) events(site, id string, seq int64, steps ...string) {
	tf.t.Helper()
	var evs []protocol.Event
	for i, s := range steps {
		state, msg, _ := strings.Cut(s, ": ")
		evs = append(evs, protocol.Event{JobID: id, Seq: seq + int64(i), State: state, Message: msg, At: tf.now()})
	}
	if _, err := tf.Events(tf.ctx, site, evs); err != nil {
		tf.t.Fatalf("events of %s: %v", id, err)
	}
}

// job returns the site's job id as history shows it.
func (tf *testFleet) job(site, id string) protocol.Job {
	tf.t.Helper()
	p, err := tf.History(tf.ctx, site, "", MaxHistoryLimit)
	if err != nil {
		tf.t.Fatal(err)
	}
	for _, j := range p.Jobs {
		if j.ID == id {
			return j
		}
	}
	tf.t.Fatalf("job %s is not in the history of %s", id, site)
	return protocol.Job{}
}

func (tf *testFleet) wantJob(site, id, result, reason string) {
	tf.t.Helper()
	if j := tf.job(site, id); j.Result != result || j.Reason != reason {
		tf.t.Errorf("job %s ended %s (%q), want %s (%q)", id, j.Result, j.Reason, result, reason)
	}
}

// sent returns the signals emitted so far, once delivered.
func (tf *testFleet) sent() []JobEvent {
	tf.FlushSignals()
	tf.mu.Lock()
	defer tf.mu.Unlock()
	return append([]JobEvent(nil), tf.signals...)
}

// ends returns the JobEnded signals of job id.
func (tf *testFleet) ends(id string) []JobEvent {
	var out []JobEvent
	for _, e := range tf.sent() {
		if e.Type == JobEnded && e.JobID == id {
			out = append(out, e)
		}
	}
	return out
}

// wantEndedOnce checks that job id emitted exactly one JobEnded, with
// result and reason.
func (tf *testFleet) wantEndedOnce(id, result, reason string) {
	tf.t.Helper()
	ends := tf.ends(id)
	if len(ends) != 1 {
		tf.t.Fatalf("job %s emitted %d JobEnded signals, want 1: %+v", id, len(ends), ends)
	}
	if e := ends[0]; e.Result != result || e.Reason != reason || e.Amends {
		tf.t.Errorf("JobEnded of %s: %s (%q) amends=%t, want %s (%q)", id, e.Result, e.Reason, e.Amends, result, reason)
	}
}

func ids(jobs []protocol.Job) string {
	var s []string
	for _, j := range jobs {
		s = append(s, fmt.Sprintf("%s:%s->%s", j.Product, j.From, j.To))
	}
	return strings.Join(s, " ")
}
