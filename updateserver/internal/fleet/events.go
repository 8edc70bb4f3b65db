package fleet

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
)

// JobEventType says what happened to a job. The values are the names
// webhooks will use.
type JobEventType string

// What can happen to a job.
const (
	// JobCreated: support, a rollout or a followed channel made the job.
	JobCreated JobEventType = "job.created"
	// JobStarted: the agent's first event of the job arrived.
	JobStarted JobEventType = "job.started"
	// JobEnded: the job ended: the agent reported its end, the sweeper
	// timed it out, a newer upgrade superseded it, or the hop before it
	// did not succeed. Result and Reason say which.
	JobEnded JobEventType = "job.ended"
)

// JobEvent is a signal about one job, emitted once the change it reports
// is committed.
type JobEvent struct {
	Type JobEventType
	// At is when the server made the change.
	At                                     time.Time
	JobID, Site, Client, Product, From, To string
	// Result is the job's result after the change: pending when created,
	// running when started, the end's when ended.
	Result string
	// Reason says why a job that did not succeed ended so.
	Reason    string
	CreatedBy string
	// Amends: this end replaces an earlier one the server concluded
	// without the agent: a job timed out, then its agent reported how it
	// really ended. A rollout counts the job once, as it ended last.
	Amends bool
	// RolloutID is the ID of the rollout that made the job ("" for
	// none).
	RolloutID string
}

// Subscribe calls fn with every job signal from now on until cancel is
// called.
//
// Delivery: in-process, in the order the changes committed, each signal
// at most once, on a goroutine of the subscriber's own, so that a slow
// subscriber delays only itself (never the store's writer, a check-in or
// another subscriber). Signals queued when the process stops are lost:
// whatever must survive a crash (webhooks) records its own outbox row in
// the transaction of the change, and a subscriber that needs the whole
// picture (a rollout resuming after a restart) reads it from the store
// first and uses signals only to wake up. A subscriber more than
// maxQueued signals behind loses the newest ones; the loss is logged.
func (f *Fleet) Subscribe(fn func(JobEvent)) (cancel func()) {
	return f.signals.subscribe(fn)
}

// FlushSignals waits until every signal emitted before the call was
// handed to each subscriber and its fn returned.
func (f *Fleet) FlushSignals() { f.signals.flush() }

// emit logs one line per signal and queues the signals for the
// subscribers. It is called after the transaction that made the changes
// committed, never inside it.
func (f *Fleet) emit(evs []JobEvent) {
	logSignals(f.Log, evs)
	f.signals.publish(f.Log, evs)
}

// maxJobLines is how many jobs created, started or succeeded together
// (one transaction: an upgrade of a client, a rollout's wave, a batch of
// agents' reports) are logged a line each; more are logged as one line
// per product, version and outcome (and creator), with their count and
// first sites. A rollback or failure is always a line of its own. A
// client-wide upgrade of 10,000 sites logged 10,000 "job created" lines,
// then as many "job started" and "job succeeded": noise that buried
// what an operator looks for (measured, it cost the upgrade's agents no
// time they noticed). Every job's own history stays in the store
// (`updateserver history --site S`).
const maxJobLines = 10

// logSignals logs evs (see maxJobLines).
func logSignals(log *slog.Logger, evs []JobEvent) {
	if log == nil {
		return
	}
	if len(evs) <= maxJobLines {
		for _, e := range evs {
			logSignal(log, e)
		}
		return
	}
	type key struct {
		msg, product, to, by string
	}
	type group struct {
		sites []string
		first JobEvent
	}
	var keys []key
	groups := map[key]*group{}
	for _, e := range evs {
		msg := ""
		switch {
		case e.Type == JobCreated:
			msg = "jobs created"
		case e.Type == JobStarted:
			msg = "jobs started"
		case e.Result == protocol.ResultSucceeded:
			msg = "jobs succeeded"
		}
		if msg == "" { // a rollback or failure
			logSignal(log, e)
			continue
		}
		k := key{msg, e.Product, e.To, ""}
		if e.Type == JobCreated {
			k.by = e.CreatedBy
		}
		g := groups[k]
		if g == nil {
			g = &group{first: e}
			groups[k] = g
			keys = append(keys, k)
		}
		g.sites = append(g.sites, e.Site)
	}
	for _, k := range keys {
		g := groups[k]
		if len(g.sites) == 1 { // alone of its kind in a large batch
			logSignal(log, g.first)
			continue
		}
		sites := strings.Join(g.sites[:min(3, len(g.sites))], ", ")
		if n := len(g.sites) - 3; n > 0 {
			sites += fmt.Sprintf(" and %d more", n)
		}
		args := []any{"count", len(g.sites), "product", k.product, "to", k.to, "sites", sites}
		if k.by != "" {
			args = append(args, "by", k.by)
		}
		log.Info(k.msg, args...)
	}
}

func logSignal(log *slog.Logger, e JobEvent) {
	if log == nil {
		return
	}
	args := []any{"site", e.Site, "job", e.JobID, "product", e.Product, "from", e.From, "to", e.To, "result", e.Result}
	if e.Reason != "" {
		args = append(args, "reason", e.Reason)
	}
	switch {
	case e.Type == JobCreated:
		log.Info("job created", append(args, "by", e.CreatedBy)...)
	case e.Type == JobStarted:
		log.Info("job started", args...)
	case e.Result == protocol.ResultSucceeded:
		log.Info("job succeeded", args...)
	case e.Result == protocol.ResultRolledBack:
		log.Warn("job rolled back", args...)
	default:
		log.Warn("job failed", args...)
	}
}

// maxQueued bounds the signals waiting for one subscriber.
const maxQueued = 100000

// signals is the in-process bus; its zero value is ready.
type signals struct {
	mu   sync.Mutex
	subs map[*subscriber]struct{}
}

type subscriber struct {
	fn      func(JobEvent)
	mu      sync.Mutex
	changed *sync.Cond // queue, busy or stopped changed
	queue   []JobEvent
	busy    bool // fn is running
	stopped bool
}

func (b *signals) subscribe(fn func(JobEvent)) func() {
	s := &subscriber{fn: fn}
	s.changed = sync.NewCond(&s.mu)
	b.mu.Lock()
	if b.subs == nil {
		b.subs = map[*subscriber]struct{}{}
	}
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	go s.run()
	var once sync.Once
	return func() {
		once.Do(func() {
			b.mu.Lock()
			delete(b.subs, s)
			b.mu.Unlock()
			s.mu.Lock()
			s.stopped, s.queue = true, nil
			s.changed.Broadcast()
			s.mu.Unlock()
		})
	}
}

func (b *signals) publish(log *slog.Logger, evs []JobEvent) {
	if len(evs) == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		s.mu.Lock()
		n := min(len(evs), maxQueued-len(s.queue))
		s.queue = append(s.queue, evs[:n]...)
		s.changed.Broadcast()
		s.mu.Unlock()
		if n < len(evs) && log != nil {
			log.Error("a job signal subscriber is too far behind: signals dropped", "dropped", len(evs)-n, "queued", maxQueued)
		}
	}
}

// flush waits until each subscriber has nothing queued and no fn running.
func (b *signals) flush() {
	b.mu.Lock()
	subs := make([]*subscriber, 0, len(b.subs))
	for s := range b.subs {
		subs = append(subs, s)
	}
	b.mu.Unlock()
	for _, s := range subs {
		s.mu.Lock()
		for !s.stopped && (len(s.queue) > 0 || s.busy) {
			s.changed.Wait()
		}
		s.mu.Unlock()
	}
}

func (s *subscriber) run() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		for !s.stopped && len(s.queue) == 0 {
			s.changed.Wait()
		}
		if s.stopped {
			return
		}
		e := s.queue[0]
		s.queue = s.queue[1:]
		s.busy = true
		s.mu.Unlock()
		s.fn(e)
		s.mu.Lock()
		s.busy = false
		s.changed.Broadcast()
	}
}
