package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/dbtest"
	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/bus"
	"github.com/dropless/dropless/updateserver/internal/store/storetest"
)

// replicas is two stores on one PostgreSQL database (replicas A and B of
// a server), each with its bus, as the daemon wires them.
type replicas struct {
	a, b *Store
	busB *bus.Postgres
	mark chan struct{} // A heard B's marker
}

func newReplicas(t *testing.T) *replicas {
	t.Helper()
	dsn := os.Getenv(dbtest.EnvPostgresDSN)
	if dsn == "" {
		t.Skip("TEST_POSTGRES_DSN is unset: set it to a PostgreSQL database to test the replicas' caches (CI does: make test-postgres)")
	}
	path := storetest.Schema(t)
	r := &replicas{mark: make(chan struct{}, 16)}
	channel := fmt.Sprintf("dropless_store_test_%d", time.Now().UnixNano())
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var buses []*bus.Postgres
	for _, s := range []**Store{&r.a, &r.b} {
		st, err := Open(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		b := &bus.Postgres{DSN: dsn, Channel: channel}
		st.SetBus(b)
		t.Cleanup(st.ListenCaches(b))
		go b.Run(ctx)
		<-b.Listening()
		*s, buses = st, append(buses, b)
	}
	r.busB = buses[1]
	t.Cleanup(buses[0].Subscribe("test-mark", func(string) { r.mark <- struct{}{} }))
	return r
}

// heard waits until A has heard everything B committed so far: B sends
// a marker after it, and A's bus delivers in commit order, calling every
// subscriber of one notification before the next.
func (r *replicas) heard(t *testing.T) {
	t.Helper()
	if err := r.busB.Send(context.Background(), bus.Msg{Topic: "test-mark"}); err != nil {
		t.Fatal(err)
	}
	<-r.mark
}

// TestReenrollThroughAnotherReplicaRefusesTheOldCredential: A has the
// site's credential cached; the site re-enrolls through B: A refuses the
// old credential.
func TestReenrollThroughAnotherReplicaRefusesTheOldCredential(t *testing.T) {
	r := newReplicas(t)
	ctx := context.Background()
	enrollSite(t, r.a, "s1", "old")
	if site, err := r.a.SiteByCredential(ctx, "old"); err != nil || site != "s1" {
		t.Fatalf("old credential on A: %q %v", site, err)
	}
	enrollSite(t, r.b, "s1", "new")
	r.heard(t)
	if site, err := r.a.SiteByCredential(ctx, "old"); !errors.Is(err, ErrNotFound) {
		t.Errorf("A after the re-enrollment through B: old credential gives %q %v, want refused", site, err)
	}
	if site, err := r.a.SiteByCredential(ctx, "new"); err != nil || site != "s1" {
		t.Errorf("A: new credential: %q %v", site, err)
	}
}

// TestJobCreatedThroughAnotherReplicaIsAssigned: A knows the site has no
// open job; a job is created through B: A's next check-in reads it.
func TestJobCreatedThroughAnotherReplicaIsAssigned(t *testing.T) {
	r := newReplicas(t)
	ctx := context.Background()
	enrollSite(t, r.a, "s1", "cred")
	if _, err := r.a.OpenJob(ctx, "s1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("open job before any: %v", err)
	}
	err := r.b.WithJobs(ctx, func(t *JobTx) error {
		return t.InsertJob(NewJob{ID: "j1", Site: "s1", Product: "p", To: "1.0.0", Target: "p/p-1.0.0.tar.gz", CreatedBy: "t"}, time.Now())
	})
	if err != nil {
		t.Fatal(err)
	}
	r.heard(t)
	if o, err := r.a.OpenJob(ctx, "s1"); err != nil || o.Job.ID != "j1" {
		t.Errorf("A's open job after one was created through B: %+v %v", o.Job, err)
	}
}

// TestWindowChangedThroughAnotherReplicaApplies: A has the site's window
// cached; the window is changed, then a freeze made, through B: A answers
// with the new window and the freeze.
func TestWindowChangedThroughAnotherReplicaApplies(t *testing.T) {
	r := newReplicas(t)
	ctx := context.Background()
	now := time.Now()
	enrollSite(t, r.a, "s1", "cred")
	if err := r.a.SetWindow(ctx, now, ScopeClient, "c", []string{"Sat 02:00-06:00"}, "UTC", Audit{Actor: "t", Action: "window.set"}); err != nil {
		t.Fatal(err)
	}
	if w, err := r.a.SiteWindow(ctx, "s1", "c"); err != nil || w.Weekly[0] != "Sat 02:00-06:00" {
		t.Fatalf("A's window: %+v %v", w, err)
	}
	if fs, err := r.a.Freezes(ctx, now); err != nil || len(fs) != 0 {
		t.Fatalf("A's freezes before any: %+v %v", fs, err)
	}
	if err := r.b.SetWindow(ctx, now, ScopeClient, "c", []string{"Sun 01:00-03:00"}, "UTC", Audit{Actor: "t", Action: "window.set"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.b.CreateFreeze(ctx, now, protocol.Freeze{Client: "c", From: now, To: now.Add(time.Hour), Reason: "r", CreatedBy: "t"}, Audit{Actor: "t", Action: "freeze.create"}); err != nil {
		t.Fatal(err)
	}
	r.heard(t)
	if w, err := r.a.SiteWindow(ctx, "s1", "c"); err != nil || w.Weekly[0] != "Sun 01:00-03:00" {
		t.Errorf("A's window after B changed it: %+v %v", w, err)
	}
	if fs, err := r.a.Freezes(ctx, now); err != nil || len(fs) != 1 {
		t.Errorf("A's freezes after B made one: %+v %v", fs, err)
	}
}

// TestReportChangedThroughAnotherReplicaIsWritten: A remembers the
// site's report; the row is changed through B (an offline report's
// installed version, then a check-in of the agent that moved to B): A's
// next check-in reporting what A remembers is written.
func TestReportChangedThroughAnotherReplicaIsWritten(t *testing.T) {
	r := newReplicas(t)
	ctx := context.Background()
	enrollSite(t, r.a, "s1", "cred")
	v1 := protocol.CheckinRequest{InstalledVersion: "1.0.0", State: protocol.StateIdle}
	if _, err := r.a.Checkin(ctx, time.Now(), "s1", v1); err != nil {
		t.Fatal(err)
	}
	if err := r.b.WithJobs(ctx, func(t *JobTx) error { return t.SetInstalledVersion("s1", "2.0.0") }); err != nil {
		t.Fatal(err)
	}
	r.heard(t)
	if wrote, err := r.a.Checkin(ctx, time.Now(), "s1", v1); err != nil || !wrote {
		t.Errorf("A's check-in after B set the installed version: wrote %v, %v", wrote, err)
	}
	// The agent moves to B, reports 2.0.0, and comes back to A with 1.0.0.
	if wrote, err := r.b.Checkin(ctx, time.Now(), "s1", protocol.CheckinRequest{InstalledVersion: "2.0.0", State: protocol.StateIdle}); err != nil || !wrote {
		t.Fatalf("B's check-in: wrote %v, %v", wrote, err)
	}
	r.heard(t)
	if wrote, err := r.a.Checkin(ctx, time.Now(), "s1", v1); err != nil || !wrote {
		t.Errorf("A's check-in after the agent reported elsewhere through B: wrote %v, %v", wrote, err)
	}
	site, err := r.b.GetSite(ctx, "s1")
	if err != nil || site.InstalledVersion != "1.0.0" {
		t.Errorf("the row holds %q (%v), want the agent's last report 1.0.0", site.InstalledVersion, err)
	}
}

// heldBus is a bus that sends nothing and keeps its subscribers, for a
// test to deliver to.
type heldBus struct{ fns map[string]func(string) }

func (b *heldBus) InTx(bus.Exec, ...bus.Msg) error        { return nil }
func (b *heldBus) Send(context.Context, ...bus.Msg) error { return nil }
func (b *heldBus) Subscribe(topic string, fn func(string)) func() {
	b.fns[topic] = fn
	return func() { delete(b.fns, topic) }
}

// TestResyncDropsTheCaches: after the bus reconnected (notifications
// may have been lost), a store forgets every credential, "no open job",
// window and report it had cached: changes made by another store on the
// same database behind its back are seen.
func TestResyncDropsTheCaches(t *testing.T) {
	a, b := openTwo(t)
	held := &heldBus{fns: map[string]func(string){}}
	defer a.ListenCaches(held)()
	ctx := context.Background()
	now := time.Now()
	enrollSite(t, a, "s1", "old")
	v1 := protocol.CheckinRequest{InstalledVersion: "1.0.0", State: protocol.StateIdle}
	if _, err := a.Checkin(ctx, now, "s1", v1); err != nil {
		t.Fatal(err)
	}
	if _, err := a.SiteByCredential(ctx, "old"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.OpenJob(ctx, "s1"); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	if _, err := a.SiteWindow(ctx, "s1", "c"); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}

	enrollSite(t, b, "s1", "new")
	if err := b.WithJobs(ctx, func(t *JobTx) error {
		return t.InsertJob(NewJob{ID: "j1", Site: "s1", Product: "p", To: "1.0.0", Target: "p/p-1.0.0.tar.gz", CreatedBy: "t"}, now)
	}); err != nil {
		t.Fatal(err)
	}
	if err := b.SetWindow(ctx, now, ScopeClient, "c", []string{"Sat 02:00-06:00"}, "UTC", Audit{Actor: "t", Action: "window.set"}); err != nil {
		t.Fatal(err)
	}
	if wrote, err := b.Checkin(ctx, now, "s1", protocol.CheckinRequest{InstalledVersion: "2.0.0"}); err != nil || !wrote {
		t.Fatal(wrote, err)
	}

	held.fns[bus.Cache](bus.Resync)
	if site, err := a.SiteByCredential(ctx, "old"); !errors.Is(err, ErrNotFound) {
		t.Errorf("old credential after a resync: %q %v, want refused", site, err)
	}
	if o, err := a.OpenJob(ctx, "s1"); err != nil || o.Job.ID != "j1" {
		t.Errorf("open job after a resync: %+v %v", o.Job, err)
	}
	if w, err := a.SiteWindow(ctx, "s1", "c"); err != nil || len(w.Weekly) != 1 {
		t.Errorf("window after a resync: %+v %v", w, err)
	}
	if wrote, err := a.Checkin(ctx, now, "s1", v1); err != nil || !wrote {
		t.Errorf("check-in after a resync: wrote %v, %v", wrote, err)
	}
}
