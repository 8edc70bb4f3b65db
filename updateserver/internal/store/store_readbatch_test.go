package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestReadBatcherCoalesces: keys asked while every batch query runs are
// read together in the next one, each once however often it was asked;
// each caller gets its own key's value or "not found"; a failed query
// fails exactly the callers of its batch; a caller that gives up is not
// held by the query.
func TestReadBatcherCoalesces(t *testing.T) {
	gate := make(chan struct{})
	var calls atomic.Int32
	var mu sync.Mutex
	var batches [][]string
	b := &readBatcher[string, string]{fetch: func(ctx context.Context, keys []string) (map[string]string, error) {
		n := calls.Add(1)
		mu.Lock()
		batches = append(batches, keys)
		mu.Unlock()
		if n <= maxReadBatches {
			<-gate // the first batches hold every runner
		}
		if keys[0] == "fail" {
			return nil, errors.New("the database is gone")
		}
		out := map[string]string{}
		for _, k := range keys {
			if k != "missing" {
				out[k] = "value of " + k
			}
		}
		return out, nil
	}}
	ctx := context.Background()
	type answer struct {
		v     string
		found bool
		err   error
	}
	ask := func(k string) chan answer {
		ch := make(chan answer, 1)
		go func() {
			v, found, err := b.get(ctx, k)
			ch <- answer{v, found, err}
		}()
		return ch
	}
	first := []chan answer{ask("fail")}
	for calls.Load() < 1 {
		time.Sleep(time.Millisecond)
	}
	first = append(first, ask("k0"))
	for calls.Load() < maxReadBatches {
		time.Sleep(time.Millisecond)
	}
	// Both runners wait on the gate: these all wait for the next batch.
	keys := []string{"missing"}
	for i := range 100 {
		keys = append(keys, fmt.Sprintf("k%d", i%60+1))
	}
	var rest []chan answer
	for _, k := range keys {
		rest = append(rest, ask(k))
	}
	gone, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := b.get(gone, "k1"); !errors.Is(err, context.Canceled) {
		t.Errorf("a caller that gave up: %v, want its context's error", err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		b.mu.Lock()
		queued, callers := len(b.order), 0 // "missing" and k1..k60, each once
		for _, chs := range b.waiting {
			callers += len(chs)
		}
		b.mu.Unlock()
		if callers == len(keys)+1 { // and the one that gave up
			if queued != 61 {
				t.Fatalf("%d keys wait for the next batch, want 61", queued)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d callers wait, want %d", callers, len(keys)+1)
		}
	}
	close(gate)

	if a := <-first[0]; a.err == nil || a.found {
		t.Errorf("the failed batch's caller: %+v, want the query's error", a)
	}
	if a := <-first[1]; a.err != nil || !a.found || a.v != "value of k0" {
		t.Errorf("k0: %+v", a)
	}
	for i, ch := range rest {
		a := <-ch
		switch {
		case keys[i] == "missing" && (a.err != nil || a.found):
			t.Errorf("missing: %+v, want not found", a)
		case keys[i] != "missing" && (a.err != nil || !a.found || a.v != "value of "+keys[i]):
			t.Errorf("%s: %+v", keys[i], a)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(batches) != maxReadBatches+1 || len(batches[maxReadBatches]) != 61 {
		var sizes []int
		for _, k := range batches {
			sizes = append(sizes, len(k))
		}
		t.Errorf("batch sizes %v, want %d of 1 then one of 61 (each key once)", sizes, maxReadBatches)
	}
}

// TestCheckinReadsAtOnce: many check-ins' reads at once through the
// store (credentials, open jobs; batched) each get their own site's
// answer: the site of a credential, none for an unknown one, a site's
// oldest open job, none for a site without.
func TestCheckinReadsAtOnce(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	now := time.Now()
	const n = 60
	for i := range n {
		enrollSite(t, s, fmt.Sprintf("s%02d", i), fmt.Sprintf("cred%02d", i))
	}
	if err := s.WithJobs(ctx, func(t *JobTx) error {
		var js []NewJob
		for i := 0; i < n; i += 2 { // even sites: two jobs, the first open one is the answer
			for hop := 1; hop <= 2; hop++ {
				js = append(js, NewJob{ID: fmt.Sprintf("j%02d-%d", i, hop), Site: fmt.Sprintf("s%02d", i), Product: "p",
					From: "1.0.0", To: fmt.Sprintf("1.%d.0", hop), Target: "p/t.tar.gz", CreatedBy: "t"})
			}
		}
		return t.InsertJobs(js, now)
	}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for round := range 3 {
		for i := range n {
			wg.Add(2)
			go func() {
				defer wg.Done()
				site := fmt.Sprintf("s%02d", i)
				o, err := s.OpenJob(ctx, site)
				switch {
				case i%2 == 0 && (err != nil || o.Job.ID != fmt.Sprintf("j%02d-1", i) || o.Assignment.Version != "1.1.0"):
					t.Errorf("round %d: %s: %+v %v, want its first job", round, site, o.Job, err)
				case i%2 == 1 && !errors.Is(err, ErrNotFound):
					t.Errorf("round %d: %s: %+v %v, want no open job", round, site, o.Job, err)
				}
			}()
			go func() {
				defer wg.Done()
				cred, want := fmt.Sprintf("cred%02d", i), fmt.Sprintf("s%02d", i)
				if i%3 == 0 {
					cred, want = "not-a-credential-"+cred, ""
				}
				site, err := s.SiteByCredential(ctx, cred)
				if site != want || (want == "") != errors.Is(err, ErrNotFound) {
					t.Errorf("round %d: credential %s: %q %v, want %q", round, cred, site, err, want)
				}
			}()
		}
		wg.Wait()
	}
}
