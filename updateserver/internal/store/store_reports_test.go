package store

import (
	"context"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/store/storetest"
)

// TestReportsDoNotWaitForAnotherReplicasWrite: while replica B's writer
// holds the write lock (a long job transaction), replica A's agents'
// check-in reports are still written and answered; A's own job write
// waits for B's, as every read-then-write must. PostgreSQL only: SQLite
// has one server, whose writer takes every write in turn.
func TestReportsDoNotWaitForAnotherReplicasWrite(t *testing.T) {
	if !storetest.Postgres() {
		t.Skip("replicas share a write lock on PostgreSQL only (TEST_POSTGRES_DSN)")
	}
	a, b := openTwo(t)
	ctx := context.Background()
	now := time.Now()
	enrollSite(t, a, "s1", "c1")
	enrollSite(t, a, "s2", "c2")

	holding, release := make(chan struct{}), make(chan struct{})
	bDone := make(chan error, 1)
	go func() {
		bDone <- b.WithJobs(ctx, func(t *JobTx) error {
			if err := t.InsertJob(NewJob{ID: "jb", Site: "s2", Product: "p", To: "2.0.0", Target: "p/p-2.0.0.tar.gz", CreatedBy: "t"}, now); err != nil {
				return err
			}
			close(holding)
			<-release
			return nil
		})
	}()
	<-holding
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()

	reported := make(chan error, 1)
	go func() {
		_, err := a.Checkin(ctx, now, "s1", protocol.CheckinRequest{InstalledVersion: "1.5.0", State: protocol.StateIdle, Hostname: "h1"})
		reported <- err
	}()
	select {
	case err := <-reported:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("A's check-in report waited for B's write transaction")
	}
	site, err := a.GetSite(ctx, "s1")
	if err != nil || site.InstalledVersion != "1.5.0" || site.Hostname != "h1" {
		t.Errorf("the row after A's report: %q %q (%v), want 1.5.0 h1", site.InstalledVersion, site.Hostname, err)
	}

	// A job write of A still waits for B's transaction.
	aDone := make(chan error, 1)
	go func() {
		aDone <- a.WithJobs(ctx, func(t *JobTx) error {
			return t.InsertJob(NewJob{ID: "ja", Site: "s1", Product: "p", To: "2.0.0", Target: "p/p-2.0.0.tar.gz", CreatedBy: "t"}, now)
		})
	}()
	select {
	case err := <-aDone:
		t.Fatalf("A's job write ran while B held the write lock: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	close(release)
	released = true
	for _, ch := range []chan error{bDone, aDone} {
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
	}
	for site, id := range map[string]string{"s1": "ja", "s2": "jb"} {
		if o, err := a.OpenJob(ctx, site); err != nil || o.Job.ID != id {
			t.Errorf("open job of %s: %q %v, want %s", site, o.Job.ID, err, id)
		}
	}
}
