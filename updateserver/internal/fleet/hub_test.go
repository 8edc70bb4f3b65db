package fleet

import (
	"fmt"
	"testing"

	"github.com/dropless/dropless/pkg/protocol"
)

// The hub wakes exactly the long-polls of the sites named, whatever shard
// they fall in, each once, and leaves the others waiting.
func TestHubWakesTheSitesNamed(t *testing.T) {
	var h hub
	const n = 1000
	chans := make([]chan *wakeUp, n)
	for i := range n {
		chans[i] = h.subscribe(fmt.Sprintf("site-%04d", i))
	}
	second := h.subscribe("site-0007") // a site may hold two long-polls
	var ws []wakeUp
	for i := 0; i < n; i += 2 {
		ws = append(ws, wakeUp{site: fmt.Sprintf("site-%04d", i), a: &protocol.Assignment{JobID: fmt.Sprint("job-", i)}})
	}
	h.notifyMany(ws)
	for i, ch := range chans {
		select {
		case w := <-ch:
			if i%2 == 1 {
				t.Fatalf("site-%04d woken, only even sites were named", i)
			}
			if w.a.JobID != fmt.Sprint("job-", i) {
				t.Fatalf("site-%04d got %s", i, w.a.JobID)
			}
		default:
			if i%2 == 0 {
				t.Fatalf("site-%04d not woken", i)
			}
		}
	}
	if got := h.waiting(); got != n/2+1 {
		t.Fatalf("%d long-polls wait after the wake-up, want the %d not named", got, n/2+1)
	}
	// A second wake-up of a woken site finds nobody; the woken one's
	// channel holds one wake-up only, and leaving again is harmless.
	h.notifyMany(ws[:1])
	h.unsubscribe("site-0000", chans[0])
	h.notifyAll()
	if got := h.waiting(); got != 0 {
		t.Fatalf("%d long-polls wait after notifyAll", got)
	}
	if w := <-second; w != nil {
		t.Fatalf("notifyAll sent %+v, want nil (read the assignment again)", w)
	}
	if w := <-chans[7]; w != nil {
		t.Fatalf("notifyAll sent %+v to site-0007", w)
	}
}
