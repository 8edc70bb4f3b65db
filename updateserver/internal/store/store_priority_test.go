package store

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
)

// TestPriorityWriteGoesFirst: an operator's write (a Priority context)
// queued behind many agents' writes commits before them: an upgrade's
// jobs do not wait for the previous upgrade's thousand job reports.
func TestPriorityWriteGoesFirst(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	if err := s.tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.Exec(`CREATE TABLE order_seen (n INTEGER NOT NULL, who TEXT NOT NULL)`)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var order []string
	write := func(ctx context.Context, who string) error {
		return s.tx(ctx, func(tx *sql.Tx) error {
			mu.Lock()
			order = append(order, who)
			n := len(order)
			mu.Unlock()
			_, err := tx.Exec(`INSERT INTO order_seen (n, who) VALUES (?, ?)`, n, who)
			return err
		})
	}
	// The writer is busy with a write that waits.
	busy, release := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := s.tx(ctx, func(*sql.Tx) error { close(busy); <-release; return nil }); err != nil {
			t.Error(err)
		}
	})
	<-busy
	const agents = 50
	errs := make(chan error, agents+1)
	for range agents {
		wg.Go(func() { errs <- write(ctx, "agent") })
	}
	time.Sleep(200 * time.Millisecond) // setup: let the agents' writes queue
	wg.Go(func() { errs <- write(Priority(ctx), "operator") })
	time.Sleep(200 * time.Millisecond) // setup: let the operator's write queue
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	var first string
	if err := s.queryRow(ctx, `SELECT who FROM order_seen ORDER BY n LIMIT 1`).Scan(&first); err != nil {
		t.Fatal(err)
	}
	if first != "operator" || len(order) != agents+1 {
		t.Fatalf("first write committed after the busy one: %q (of %d); want the operator's, queued behind %d agents' writes", first, len(order), agents)
	}
}

// TestPriorityReadsHaveTheirOwnConnections: with every connection of the
// read pool taken (thousands of agents' check-ins), an operator's read
// (a Priority context) is answered; an agent's waits.
func TestPriorityReadsHaveTheirOwnConnections(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	takeReadPool(t, s)
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := s.ListSites(short, SiteFilter{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("an agent's read with the read pool taken: %v; want it to wait (deadline exceeded)", err)
	}
	op, cancel := context.WithTimeout(Priority(ctx), 10*time.Second)
	defer cancel()
	if _, err := s.ListSites(op, SiteFilter{}); err != nil {
		t.Fatalf("an operator's read with the read pool taken: %v", err)
	}
	if _, err := s.SitesByName(op, []string{"a", "b"}); err != nil {
		t.Fatalf("an operator's read of named sites with the read pool taken: %v", err)
	}
}

// TestPriorityJobTransactionKeepsItsTurn: an operator's job transaction
// (an upgrade) does not overtake the agents' job reports queued before
// it: it sees the jobs they ended. A hand-out (WithJobsFirst), which
// check-ins' answers wait for, does.
func TestPriorityJobTransactionKeepsItsTurn(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	var mu sync.Mutex
	var order []string
	job := func(ctx context.Context, who string) error {
		with := s.WithJobs
		if who == "hand-out" {
			with = s.WithJobsFirst
		}
		return with(ctx, func(*JobTx) error {
			mu.Lock()
			order = append(order, who)
			mu.Unlock()
			return nil
		})
	}
	release := blockWriter(t, s)
	var wg sync.WaitGroup
	const agents = 20
	for range agents {
		wg.Go(func() {
			if err := job(ctx, "agent"); err != nil {
				t.Error(err)
			}
		})
	}
	time.Sleep(200 * time.Millisecond) // setup: let the agents' reports queue
	wg.Go(func() {
		if err := job(Priority(ctx), "operator"); err != nil {
			t.Error(err)
		}
	})
	time.Sleep(200 * time.Millisecond) // setup: let the operator's upgrade queue
	wg.Go(func() {
		if err := job(ctx, "hand-out"); err != nil {
			t.Error(err)
		}
	})
	time.Sleep(200 * time.Millisecond) // setup: let the hand-out queue
	release()
	wg.Wait()
	if len(order) != agents+2 || order[0] != "hand-out" || order[agents+1] != "operator" {
		t.Fatalf("job transactions ran in the order %v; want the hand-out first, the operator's after the %d agents' queued before it", order, agents)
	}
}

// TestCheckinReportGoesAheadOfJobReports: a check-in's report queued
// behind agents' job reports is written first: the check-in waits for it
// before it reads its assignment.
func TestCheckinReportGoesAheadOfJobReports(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	enrollSite(t, s, "s1", "cred-1")
	release := blockWriter(t, s)
	var wg sync.WaitGroup
	seen := make(chan string, 20)
	for range cap(seen) {
		wg.Go(func() {
			err := s.WithJobs(ctx, func(t *JobTx) error {
				st, err := t.Site("s1")
				seen <- st.InstalledVersion
				return err
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	time.Sleep(200 * time.Millisecond) // setup: let the job reports queue
	wg.Go(func() {
		if _, err := s.Checkin(ctx, time.Now(), "s1", protocol.CheckinRequest{InstalledVersion: "2.0.0", State: protocol.StateIdle}); err != nil {
			t.Error(err)
		}
	})
	time.Sleep(200 * time.Millisecond) // setup: let the report queue
	release()
	wg.Wait()
	close(seen)
	for v := range seen {
		if v != "2.0.0" {
			t.Fatalf("a job report queued before the check-in's report saw version %q: the report waited behind the job reports", v)
		}
	}
}
