package fleet

import (
	"sync"

	"github.com/dropless/dropless/pkg/protocol"
)

// hub wakes long-polling check-ins when their site gets a job, handing
// them the new assignment.
type hub struct {
	mu   sync.Mutex
	subs map[string]map[chan *protocol.Assignment]struct{}
}

func (h *hub) subscribe(site string) chan *protocol.Assignment {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.subs == nil {
		h.subs = map[string]map[chan *protocol.Assignment]struct{}{}
	}
	ch := make(chan *protocol.Assignment, 1)
	if h.subs[site] == nil {
		h.subs[site] = map[chan *protocol.Assignment]struct{}{}
	}
	h.subs[site][ch] = struct{}{}
	return ch
}

func (h *hub) unsubscribe(site string, ch chan *protocol.Assignment) {
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

func (h *hub) notify(site string, a *protocol.Assignment) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs[site] {
		select {
		case ch <- a:
		default:
		}
	}
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
