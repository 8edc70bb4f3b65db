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

type hub struct {
	mu   sync.Mutex
	subs map[string]map[chan *wakeUp]struct{}
}

func (h *hub) subscribe(site string) chan *wakeUp {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.subs == nil {
		h.subs = map[string]map[chan *wakeUp]struct{}{}
	}
	ch := make(chan *wakeUp, 1)
	if h.subs[site] == nil {
		h.subs[site] = map[chan *wakeUp]struct{}{}
	}
	h.subs[site][ch] = struct{}{}
	return ch
}

func (h *hub) unsubscribe(site string, ch chan *wakeUp) {
	if ch == nil {
		return // never subscribed
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.subs[site], ch)
	if len(h.subs[site]) == 0 {
		delete(h.subs, site)
	}
}

func (h *hub) notify(w *wakeUp) {
	h.notifyMany([]wakeUp{*w})
}

// notifyMany wakes the long-polls of ws' sites, under one lock: the
// woken calls each take it again to unsubscribe, and 10,000 of them
// would otherwise take turns with the loop waking them.
func (h *hub) notifyMany(ws []wakeUp) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := range ws {
		w := &ws[i]
		for ch := range h.subs[w.site] {
			select {
			case ch <- w:
			default:
			}
		}
	}
}

// holds reports whether a long-poll of site waits here.
func (h *hub) holds(site string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs[site]) > 0
}

// notifyAll wakes every long-poll to read its assignment again (the bus
// reconnected: a wake-up from another replica may have been missed).
func (h *hub) notifyAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, chans := range h.subs {
		for ch := range chans {
			select {
			case ch <- nil:
			default:
			}
		}
	}
}

// waiting is how many long-polls wait.
func (h *hub) waiting() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, subs := range h.subs {
		n += len(subs)
	}
	return n
}
