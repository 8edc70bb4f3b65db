package fleet

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/bus"
	"github.com/dropless/dropless/updateserver/internal/store"
	"github.com/dropless/dropless/updateserver/internal/store/storetest"
)

// sentBus is a Bus that keeps what job transactions send (it sends
// nothing).
type sentBus struct{ msgs []bus.Msg }

func (b *sentBus) InTx(_ bus.Exec, msgs ...bus.Msg) error {
	b.msgs = append(b.msgs, msgs...)
	return nil
}
func (b *sentBus) Send(context.Context, ...bus.Msg) error { return nil }
func (b *sentBus) Subscribe(string, func(string)) func()  { return func() {} }
func (b *sentBus) topics() (out map[string][]string) {
	out = map[string][]string{}
	for _, m := range b.msgs {
		out[m.Topic] = append(out[m.Topic], m.Payload)
	}
	return out
}

// TestJobChangesTellTheOtherReplicas: an upgrade tells the other
// replicas which sites to wake; a job ending tells them its product and
// site (for the follower and the rollout scheduler) and that the webhook
// outbox has rows.
func TestJobChangesTellTheOtherReplicas(t *testing.T) {
	tf := newTestFleet(t)
	sent := &sentBus{}
	tf.Bus = sent
	tf.Outbox = func(*store.JobTx, time.Time, []JobEvent) error { return nil }
	tf.publish("acme-erp", "1.1.0", "")
	tf.enroll("s1", "acme", "1.0.0", "1.0.0")
	tf.enroll("s2", "acme", "1.0.0", "1.0.0")
	jobs := tf.upgrade(protocol.UpgradeRequest{Client: "acme", To: "1.1.0", Now: true})
	if got := sent.topics(); fmt.Sprint(got[bus.Wake]) != "[s1\ns2]" || len(got[bus.Outbox]) != 1 {
		t.Fatalf("an upgrade of s1 and s2 sent %q", got)
	}
	sent.msgs = nil
	tf.checkin("s1", protocol.CheckinRequest{InstalledVersion: "1.1.0", AgentVersion: "1.0.0", State: protocol.StateIdle,
		Job: &protocol.JobStatus{ID: jobs[0].ID, Result: protocol.ResultSucceeded}})
	if got := sent.topics(); fmt.Sprint(got[bus.Ended]) != "[acme-erp\ts1\t]" || len(got[bus.Wake]) != 0 {
		t.Fatalf("a job ending sent %q", got)
	}
}

// TestAnotherReplicasUpgradeWakesTheLongPoll: replicas A and B (two
// Fleets, each on its own Store of one PostgreSQL database, each with
// its own bus connection); B holds an agent's long-poll (B's store has
// cached that the site has no open job), the upgrade is made through A,
// whose job transaction notifies B: B answers the long-poll with the
// new job, before its wait ran out.
func TestAnotherReplicasUpgradeWakesTheLongPoll(t *testing.T) {
	dsn := os.Getenv("TEST_POSTGRES_DSN")
	if dsn == "" {
		t.Skip("TEST_POSTGRES_DSN is unset: set it to a PostgreSQL database to test the replicas' bus (CI does: make test-postgres)")
	}
	path := storetest.Schema(t)
	a, b := newTestFleetOn(t, path), newTestFleetOn(t, path)
	channel := fmt.Sprintf("dropless_fleet_test_%d", time.Now().UnixNano())
	busA, busB := &bus.Postgres{DSN: dsn, Channel: channel}, &bus.Postgres{DSN: dsn, Channel: channel}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, p := range []*bus.Postgres{busA, busB} {
		go p.Run(ctx)
		<-p.Listening()
	}
	defer b.Listen(busB)()
	defer b.Store.ListenCaches(busB)()
	a.Bus = busA
	a.Store.SetBus(busA)

	a.publish("acme-erp", "1.1.0", "")
	a.enroll("s1", "acme", "1.0.0", "1.0.0")
	answer := make(chan protocol.CheckinResponse, 1)
	go func() {
		// A wait far longer than the test: only a wake-up answers it
		// with the job (at the wait's end it would answer without).
		resp, err := b.Checkin(ctx, "s1", protocol.CheckinRequest{InstalledVersion: "1.0.0", AgentVersion: "1.0.0", State: protocol.StateIdle}, time.Hour)
		if err != nil {
			t.Error(err)
		}
		answer <- resp
	}()
	for b.hubWaiting("s1") == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	// A's job transaction sends its wake-up with pg_notify: B hears it
	// once the upgrade committed.
	jobs := a.upgrade(protocol.UpgradeRequest{Site: "s1", To: "1.1.0", Now: true})
	resp := <-answer
	if resp.Assignment == nil || resp.Assignment.JobID != jobs[0].ID {
		t.Fatalf("replica B answered the long-poll with %+v, want job %s", resp.Assignment, jobs[0].ID)
	}
}

func (f *Fleet) hubWaiting(site string) int {
	sh := f.hub.shard(site)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return len(sh.subs[site])
}
