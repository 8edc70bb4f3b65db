package fleet

import (
	"context"
	"sync"
)

// Handing out jobs in batches: when an upgrade wakes 10,000 long-polls at
// once, each must record that its job is handed out before its answer
// leaves (pickUp). One transaction per answer would be 10,000 savepoints
// with their own reads; instead the answers waiting to be recorded queue
// here, and one transaction records all that queued while the previous
// one committed: it reads the open jobs of all their sites in a few
// queries and marks the jobs in a few statements. Under no load a batch
// is one answer, as before; under load the batches grow with the queue.

// pickUpReq is one answer waiting for its job to be recorded as handed
// out.
type pickUpReq struct {
	site, id string
	done     chan pickUpResult
}

type pickUpResult struct {
	ok  bool
	err error
}

// pickUps is the queue of answers waiting, and whether a batch runs.
type pickUps struct {
	mu      sync.Mutex
	queue   []*pickUpReq
	running bool
}

// maxPickUpBatch bounds one batch's transaction.
const maxPickUpBatch = 2000

// pickUp records that the site's agent has job id: handed out in a
// check-in answer, or reported working on it. Only the site's oldest open
// job is handed out; false means id is not that job (superseded, ended or
// behind another one meanwhile) and must not be handed out. It returns
// once the record is durable (batched with other answers' records).
func (f *Fleet) pickUp(ctx context.Context, site, id string) (bool, error) {
	req := &pickUpReq{site: site, id: id, done: make(chan pickUpResult, 1)}
	p := &f.pickUps
	p.mu.Lock()
	p.queue = append(p.queue, req)
	start := !p.running
	p.running = true
	p.mu.Unlock()
	if start {
		// Its transactions go ahead of the agents' job reports queued
		// in the store (pickUpBatch): the answers wait for it.
		go f.runPickUps(context.WithoutCancel(ctx))
	}
	// Once queued, wait for the outcome even if ctx ends: the caller must
	// not guess whether the record landed.
	res := <-req.done
	return res.ok, res.err
}

// runPickUps records the queued pick-ups, a batch per transaction, until
// the queue is empty.
func (f *Fleet) runPickUps(ctx context.Context) {
	p := &f.pickUps
	for {
		p.mu.Lock()
		n := min(len(p.queue), maxPickUpBatch)
		if n == 0 {
			p.running = false
			p.mu.Unlock()
			return
		}
		batch := p.queue[:n:n]
		p.queue = p.queue[n:]
		if len(p.queue) == 0 {
			p.queue = nil
		}
		p.mu.Unlock()
		ok, err := f.pickUpBatch(ctx, batch)
		for i, r := range batch {
			r.done <- pickUpResult{ok: ok[i], err: err}
		}
	}
}

// pickUpBatch records the pick-ups of batch in one job transaction: each
// is recorded when its job is its site's oldest open job (ok[i]).
func (f *Fleet) pickUpBatch(ctx context.Context, batch []*pickUpReq) ([]bool, error) {
	ok := make([]bool, len(batch))
	// Check-in answers wait for it, within their agents' timeouts: it goes
	// before the agents' queued job events (jobsFirst), which a wave of
	// thousands of sites queues by the thousand.
	err := f.jobsFirst(ctx, f.now(), func(r *jobRun) error {
		clear(ok)
		var names []string
		seen := map[string]bool{}
		for _, q := range batch {
			if !seen[q.site] {
				seen[q.site] = true
				names = append(names, q.site)
			}
		}
		open, err := r.tx.OpenJobsOf(names)
		if err != nil {
			return err
		}
		var ids []string
		for i, q := range batch {
			o := open[q.site]
			if len(o) == 0 || o[0].ID != q.id {
				continue
			}
			ok[i] = true
			if !o[0].PickedUp {
				o[0].PickedUp = true
				ids = append(ids, q.id)
			}
		}
		return r.tx.PickUpAll(ids, r.now)
	})
	if err != nil {
		return make([]bool, len(batch)), err
	}
	return ok, nil
}
