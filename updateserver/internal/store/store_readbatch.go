package store

import (
	"context"
	"sync"
	"time"
)

// readBatcher coalesces the reads of keys asked at the same time into
// one query for all of them. The check-in's cache misses (a site's
// credential, its open job) come in storms: a fleet coming online, or
// every agent of a replica reconnecting after a restart, asks the same
// query for thousands of sites within seconds, and one query per site
// queued for the read pool's few connections. At 40,000 agents over
// three replicas on PostgreSQL, first check-ins waited past their 30 s
// timeout in that queue while the replicas' CPUs were far from busy.
//
// A key asked while maxReadBatches batches run waits for the next batch,
// which takes every key asked meanwhile (up to maxReadBatch): the slower
// the database, the larger the batches, as in the writer's group commit.
// A key asked alone is read at once, as before. Each key's query starts
// after it was asked, so a caller that read a cache generation before
// asking may store the answer under that generation.
type readBatcher[K comparable, V any] struct {
	// fetch reads keys (at most maxReadBatch): the value of each found;
	// a key missing from the map was not found.
	fetch func(ctx context.Context, keys []K) (map[K]V, error)

	mu      sync.Mutex
	waiting map[K][]chan batchResult[V]
	order   []K // keys of waiting, in the order first asked
	running int
}

type batchResult[V any] struct {
	v     V
	found bool
	err   error
}

const (
	// maxReadBatches is how many batch queries of one kind run at once:
	// a few of the read pool's connections, never all.
	maxReadBatches = 2
	// maxReadBatch is how many keys one query reads at most.
	maxReadBatch = inChunk
	// readBatchTimeout bounds one batch's query (it serves many callers,
	// none of whose contexts it can use).
	readBatchTimeout = time.Minute
)

// get returns k's value and whether it was found, or the error of the
// query that read it (or ctx's, when ctx ends first).
func (b *readBatcher[K, V]) get(ctx context.Context, k K) (V, bool, error) {
	ch := make(chan batchResult[V], 1)
	b.mu.Lock()
	if b.waiting == nil {
		b.waiting = map[K][]chan batchResult[V]{}
	}
	if _, ok := b.waiting[k]; !ok {
		b.order = append(b.order, k)
	}
	b.waiting[k] = append(b.waiting[k], ch)
	if b.running < maxReadBatches {
		b.running++
		go b.run()
	}
	b.mu.Unlock()
	select {
	case r := <-ch:
		return r.v, r.found, r.err
	case <-ctx.Done():
		var zero V
		return zero, false, ctx.Err()
	}
}

// run reads batches until no key waits.
func (b *readBatcher[K, V]) run() {
	for {
		b.mu.Lock()
		if len(b.order) == 0 {
			b.running--
			b.mu.Unlock()
			return
		}
		n := min(len(b.order), maxReadBatch)
		keys := make([]K, n)
		copy(keys, b.order)
		b.order = b.order[n:]
		chans := make([][]chan batchResult[V], n)
		for i, k := range keys {
			chans[i] = b.waiting[k]
			delete(b.waiting, k)
		}
		b.mu.Unlock()

		ctx, cancel := context.WithTimeout(context.Background(), readBatchTimeout)
		got, err := b.fetch(ctx, keys)
		cancel()
		for i, k := range keys {
			v, found := got[k]
			for _, ch := range chans[i] {
				ch <- batchResult[V]{v, found && err == nil, err}
			}
		}
	}
}
