package store

import (
	"context"
	"database/sql"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
)

// queueBehindBlockedWriter holds the store's writer in a write until the
// returned release is called, and queues n writes behind it, each of
// which calls probe in its transaction (the writer runs them one at a
// time). It returns once all n are waiting for the writer.
func queueBehindBlockedWriter(t *testing.T, s *Store, n int, probe func(*sql.Tx)) (release func(), wait func()) {
	t.Helper()
	ctx := context.Background()
	hold, held := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := s.tx(ctx, func(*sql.Tx) error {
			close(held)
			<-hold
			return nil
		}); err != nil {
			t.Error(err)
		}
	})
	<-held
	for range n {
		wg.Go(func() {
			if err := s.tx(ctx, func(tx *sql.Tx) error {
				probe(tx)
				return nil
			}); err != nil {
				t.Error(err)
			}
		})
	}
	// Every one of them blocked sending to the writer (goroutines in
	// "chan send"), so that what comes next queues behind them.
	for blockedSends() < n {
		runtime.Gosched()
	}
	return func() { close(hold) }, wg.Wait
}

// blockedSends counts the goroutines waiting for the store's writer to
// take their write or report.
func blockedSends() int {
	buf := make([]byte, 1<<23)
	n := 0
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if strings.Contains(g, " [select") && (strings.Contains(g, "store.(*Store).queue(") || strings.Contains(g, "store.(*Store).WithJobsBatched(")) ||
			strings.Contains(g, " [chan receive") && strings.Contains(g, "store.(*Store).writeReport(") {
			n++
		}
	}
	return n
}

// TestReportGoesWithTheNextGroup: an agent's changed report waits for the
// group being committed and its own, not for every write queued before it:
// with the writer busy and three groups' worth of writes queued, the
// report is committed with the first group, ahead of its writes (every
// one of them sees it). Before, the report queued behind them all, and under a
// rollout's thousands of job events a check-in's report waited past its
// agent's timeout.
func TestReportGoesWithTheNextGroup(t *testing.T) {
	s, _ := openTemp(t)
	enrollSite(t, s, "s1", "cred-1")
	ctx := context.Background()
	stale := 0 // writes that did not see the report
	release, wait := queueBehindBlockedWriter(t, s, 3*maxGroup, func(tx *sql.Tx) {
		var v string
		if err := tx.QueryRow(`SELECT installed_version FROM sites WHERE site = 's1'`).Scan(&v); err != nil {
			t.Error(err)
		}
		if v != "2.0.0" {
			stale++
		}
	})
	done := make(chan error, 1)
	go func() {
		_, err := s.Checkin(ctx, time.Now(), "s1", protocol.CheckinRequest{InstalledVersion: "2.0.0", State: "idle", OS: "linux", Arch: "amd64"})
		done <- err
	}()
	for blockedSends() < 3*maxGroup+1 { // the report waits too
		runtime.Gosched()
	}
	release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	wait()
	if stale > 0 {
		t.Errorf("%d of the %d writes queued before the report ran before it: it waited behind them", stale, 3*maxGroup)
	}
}

// TestWithJobsFirstGoesBeforeQueuedWrites: a transaction queued with
// WithJobsFirst is committed with the next group, ahead of the writes
// queued earlier with WithJobs or tx (all but the one the writer may have
// taken first see its row), and its changes are durable like any other's.
func TestWithJobsFirstGoesBeforeQueuedWrites(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	before := 0 // writes that ran before it
	release, wait := queueBehindBlockedWriter(t, s, 3*maxGroup, func(tx *sql.Tx) {
		var n int
		if err := tx.QueryRow(`SELECT COUNT(*) FROM rollouts`).Scan(&n); err != nil {
			t.Error(err)
		}
		if n == 0 {
			before++
		}
	})
	done := make(chan error, 1)
	go func() {
		done <- s.WithJobsFirst(ctx, func(tx *JobTx) error {
			_, err := tx.CreateRollout(RolloutRow{Product: "p", Version: "1.0.0", State: protocol.RolloutRunning, Waves: []float64{100},
				MaxParallel: 1, MaxFailures: "1", CreatedAt: time.Now(), CreatedBy: "t"}, nil)
			return err
		})
	}()
	for blockedSends() < 3*maxGroup+1 {
		runtime.Gosched()
	}
	release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	wait()
	if before > 1 {
		t.Errorf("%d of the %d writes queued before it ran before it: it waited behind them", before, 3*maxGroup)
	}
	if all, err := s.Rollouts(ctx); err != nil || len(all) != 1 {
		t.Errorf("rollouts after the commit: %v (%v), want the one created", all, err)
	}
}

// TestGroupCommitsAfterGroupTime: a group whose writes run past
// groupTime commits what it ran and leaves the rest to the next group, so
// that the writer releases the write lock other replicas wait for: the
// write after a slow one sees it committed (from outside the writer's
// transaction), and every write is answered and durable.
func TestGroupCommitsAfterGroupTime(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	slowDone := make(chan struct{})
	sawSlow := false
	release, wait := queueBehindBlockedWriter(t, s, 1, func(tx *sql.Tx) {
		// The slow write: runs longer than a group may.
		if _, err := tx.Exec(`INSERT INTO uploads (id, sha256, length, manifest, created_at, created_by) VALUES ('slow', '', 0, '', '', 't')`); err != nil {
			t.Error(err)
		}
		time.Sleep(groupTime + 50*time.Millisecond)
		close(slowDone)
	})
	errs := make(chan error, 1)
	go func() {
		errs <- s.tx(ctx, func(*sql.Tx) error {
			<-slowDone
			_, err := s.GetUpload(ctx, "slow") // the read pool: committed rows only
			sawSlow = err == nil
			return nil
		})
	}()
	for blockedSends() < 2 {
		runtime.Gosched()
	}
	release()
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	wait()
	if !sawSlow {
		t.Error("the write after one that ran past groupTime ran in its transaction, before it committed: the group held the write lock on")
	}
}
