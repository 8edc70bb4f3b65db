package store

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"
)

// batchTest queues one item per key with WithJobsBatched behind a held
// writer, all of them waiting before it goes on, so that they reach the
// writer together. Apply and each item's fn write an audit row
// (action "batch" or "alone", actor the key); an item named "bad" fails
// in both. It returns each key's answer and the keys of each Apply.
func batchTest(t *testing.T, s *Store, keys []string, applyErr error) (answers map[int]error, calls [][]string) {
	t.Helper()
	ctx := context.Background()
	now := time.Now()
	errBad := errors.New("bad item")
	var mu sync.Mutex
	b := &JobBatch{Apply: func(tx *JobTx, items []any) ([]error, error) {
		errs := make([]error, len(items))
		var call []string
		for i, it := range items {
			k := it.(string)
			call = append(call, k)
			if k == "bad" {
				errs[i] = errBad
				continue
			}
			if err := tx.Audit(now, Audit{Actor: k, Action: "batch"}); err != nil {
				return nil, err
			}
		}
		mu.Lock()
		calls = append(calls, call)
		mu.Unlock()
		return errs, applyErr
	}}
	hold, held := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		s.WithJobs(ctx, func(*JobTx) error { close(held); <-hold; return nil })
	})
	<-held
	answers = map[int]error{}
	for i, k := range keys {
		wg.Go(func() {
			err := s.WithJobsBatched(ctx, b, k, k, func(tx *JobTx) error {
				if err := tx.Audit(now, Audit{Actor: k, Action: "alone"}); err != nil {
					return err
				}
				if k == "bad" {
					return errBad
				}
				return nil
			})
			mu.Lock()
			answers[i] = err
			mu.Unlock()
		})
	}
	for blockedSends() < len(keys) {
		runtime.Gosched()
	}
	close(hold)
	wg.Wait()
	for i, k := range keys {
		if k == "bad" {
			if !errors.Is(answers[i], errBad) {
				t.Errorf("item bad: answered %v, want its own error", answers[i])
			}
		} else if answers[i] != nil {
			t.Errorf("item %s: %v", k, answers[i])
		}
	}
	return answers, calls
}

// auditCount counts the audit rows of actor and action.
func auditCount(t *testing.T, s *Store, actor, action string) int {
	t.Helper()
	var n int
	if err := s.DB().QueryRow(`SELECT COUNT(*) FROM audit_log WHERE actor = ? AND action = ?`, actor, action).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestJobBatchAppliesQueuedItemsTogether: 200 items of a JobBatch queued
// together reach its Apply together (a few calls, not one per item), never
// two of one key in one call, each in the order queued; each caller gets
// its own item's answer, and each item's changes are made once.
func TestJobBatchAppliesQueuedItemsTogether(t *testing.T) {
	s, _ := openTemp(t)
	var keys []string
	for i := range 200 {
		keys = append(keys, fmt.Sprintf("s%03d", i))
	}
	keys = append(keys, "bad", "s005") // s005 twice: two calls
	_, calls := batchTest(t, s, keys, nil)
	got := 0
	for _, call := range calls {
		seen := map[string]bool{}
		for _, k := range call {
			if seen[k] {
				t.Errorf("item %s twice in one Apply", k)
			}
			seen[k] = true
		}
		got += len(call)
	}
	if got != len(keys) || len(calls) > 3 {
		t.Errorf("Apply called %d times with %d items in all, want the %d items in at most 3 calls", len(calls), got, len(keys))
	}
	for _, k := range keys {
		want := 1
		switch k {
		case "bad":
			want = 0
		case "s005":
			want = 2
		}
		if n := auditCount(t, s, k, "batch"); n != want {
			t.Errorf("item %s: %d changes made by Apply, want %d", k, n, want)
		}
		if n := auditCount(t, s, k, "alone"); n != 0 {
			t.Errorf("item %s: ran alone %d times, want applied with the others", k, n)
		}
	}
}

// TestJobBatchFailedRunsEachAlone: when Apply fails, none of its changes
// is kept and each item runs alone (its fn): the item that fails alone is
// answered its error, the others commit.
func TestJobBatchFailedRunsEachAlone(t *testing.T) {
	s, _ := openTemp(t)
	keys := []string{"a", "b", "bad", "c"}
	_, calls := batchTest(t, s, keys, errors.New("apply failed"))
	if len(calls) == 0 {
		t.Fatal("Apply never called")
	}
	for _, k := range keys {
		if n := auditCount(t, s, k, "batch"); n != 0 {
			t.Errorf("item %s: the failed Apply's change kept", k)
		}
		want := 1
		if k == "bad" {
			want = 0
		}
		if n := auditCount(t, s, k, "alone"); n != want {
			t.Errorf("item %s: %d changes made alone, want %d", k, n, want)
		}
	}
}
