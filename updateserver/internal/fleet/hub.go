package fleet

import (
	"sync"

	"github.com/dropless/dropless/pkg/protocol"
)

// hub wakes long-polling check-ins when their site gets a job, handing
// them the new assignment.

// wakeUp is a site whose long-poll a new job wakes, with what the woken
// call needs to answer without reading the store: the job as its
// assignment, and whether it was made with --now (then it starts
// whatever the site's window says). handedOut says the transaction that
// created the job also recorded it as handed out (the site's long-poll
// was held here and its window open, ws): the woken call answers with it
// at once, with no write of its own.
type wakeUp struct {
	site, client string
	a            *protocol.Assignment
	now          bool
	handedOut    bool
	ws           protocol.WindowStatus
}

// hub holds the waiting long-polls in shards by site, each with its own
// lock: subscribing and leaving are frequent (every long-poll does both),
// and one lock for all made 10,000 woken calls queue on it one by one.
//
// A subscription is removed by whoever ends it, once: the notifier when it
// sends a wake-up (the woken call need not take the lock again, which is
// what 10,000 calls woken together would all do at once), the waiting call
// itself when it stops waiting for another reason (unsubscribe). A channel
// is in the hub exactly while nothing was sent to it.
type hub struct {
	shards [hubShards]hubShard
}

const hubShards = 64

type hubShard struct {
	mu   sync.Mutex
	subs map[string]map[chan *wakeUp]struct{}
}

func (h *hub) shard(site string) *hubShard { return &h.shards[shardOf(site)] }

// shardOf is FNV-1a of site: cheap, and it spreads a fleet's sequential
// names.
func shardOf(site string) int {
	x := uint32(2166136261)
	for i := 0; i < len(site); i++ {
		x ^= uint32(site[i])
		x *= 16777619
	}
	return int(x % hubShards)
}

func (h *hub) subscribe(site string) chan *wakeUp {
	ch := make(chan *wakeUp, 1)
	sh := h.shard(site)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.subs == nil {
		sh.subs = map[string]map[chan *wakeUp]struct{}{}
	}
	if sh.subs[site] == nil {
		sh.subs[site] = map[chan *wakeUp]struct{}{}
	}
	sh.subs[site][ch] = struct{}{}
	return ch
}

// unsubscribe removes ch, unless a wake-up was sent to it (which removed
// it already). A call that received from ch need not call it.
func (h *hub) unsubscribe(site string, ch chan *wakeUp) {
	if ch == nil {
		return // never subscribed
	}
	sh := h.shard(site)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.remove(site, ch)
}

func (sh *hubShard) remove(site string, ch chan *wakeUp) {
	delete(sh.subs[site], ch)
	if len(sh.subs[site]) == 0 {
		delete(sh.subs, site)
	}
}

// wakeSite sends w (nil: read the assignment again) to every long-poll
// of site and removes them. The caller holds sh.mu.
func (sh *hubShard) wakeSite(site string, w *wakeUp) {
	for ch := range sh.subs[site] {
		ch <- w // buffered, and nothing was sent to it before: never blocks
	}
	delete(sh.subs, site)
}

func (h *hub) notify(w *wakeUp) {
	h.notifyMany([]wakeUp{*w})
}

// notifyMany wakes the long-polls of ws' sites, taking each shard's lock
// once.
func (h *hub) notifyMany(ws []wakeUp) {
	var by [hubShards][]int
	for i := range ws {
		n := shardOf(ws[i].site)
		by[n] = append(by[n], i)
	}
	for n := range h.shards {
		if len(by[n]) == 0 {
			continue
		}
		sh := &h.shards[n]
		sh.mu.Lock()
		for _, i := range by[n] {
			sh.wakeSite(ws[i].site, &ws[i])
		}
		sh.mu.Unlock()
	}
}

// holds reports whether a long-poll of site waits here.
func (h *hub) holds(site string) bool {
	sh := h.shard(site)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return len(sh.subs[site]) > 0
}

// notifyAll wakes every long-poll to read its assignment again (the bus
// reconnected: a wake-up from another replica may have been missed).
func (h *hub) notifyAll() {
	for n := range h.shards {
		sh := &h.shards[n]
		sh.mu.Lock()
		for site := range sh.subs {
			sh.wakeSite(site, nil)
		}
		sh.mu.Unlock()
	}
}

// waiting is how many long-polls wait.
func (h *hub) waiting() int {
	n := 0
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.Lock()
		for _, subs := range sh.subs {
			n += len(subs)
		}
		sh.mu.Unlock()
	}
	return n
}
