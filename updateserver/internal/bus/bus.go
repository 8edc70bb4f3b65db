// Package bus carries wake-ups between the replicas of one server: an
// upgrade made through one replica wakes the agents long-polling another,
// a job ending on one wakes the rollout scheduler, the follower and the
// webhook sender running on another, a change the store's in-memory
// caches depend on drops them on every replica (topic Cache).
//
// Inside one process, the parts wake each other directly (fleet's hub and
// signals, publish.Subscribe): the bus only carries what another process
// must hear. With one server (SQLite) there is no other process, and
// Local does nothing. On PostgreSQL (Postgres) a message is a pg_notify
// sent inside the transaction of the change, so it is delivered when,
// and only if, the change commits; every replica LISTENs on one
// dedicated connection, reconnects with backoff when it breaks, and then
// calls every subscriber with Resync: notifications sent while it was
// disconnected are lost, so each subscriber looks at everything again.
package bus

import (
	"context"
	"strings"
	"sync"
)

// Topics of messages.
const (
	// Wake: the payload is site names, one a line: their long-polls read
	// their assignment again.
	Wake = "wake"
	// Ended: jobs ended; the payload is "product\tsite" lines: the
	// follower looks at those sites, the rollout scheduler runs a pass.
	Ended = "ended"
	// Outbox: webhook outbox rows were committed: the sender looks.
	Outbox = "outbox"
	// Rollouts: rollouts changed: the scheduler runs a pass.
	Rollouts = "rollouts"
	// Release: a release of the payload's product was published,
	// promoted or yanked.
	Release = "release"
	// Cache: rows another replica's in-memory caches depend on changed
	// (store.Store.ListenCaches); the payload is lines of "cred\tSITE",
	// "site\tSITE", "jobs" or "maint".
	Cache = "cache"
)

// Resync is the payload subscribers get after the bus reconnected:
// messages may have been missed, so look at everything.
const Resync = "\x00resync"

// Msg is one message: a topic and its payload.
type Msg struct{ Topic, Payload string }

// Exec runs a statement in the transaction of a change (store.JobTx.Exec).
type Exec func(query string, args ...any) error

// Bus sends messages to the other replicas and calls subscribers with
// theirs.
type Bus interface {
	// InTx sends msgs with the transaction exec runs in: the other
	// replicas get them once it commits, never if it rolls back.
	InTx(exec Exec, msgs ...Msg) error
	// Send sends msgs now, for a change already committed.
	Send(ctx context.Context, msgs ...Msg) error
	// Subscribe calls fn with the payload of every message on topic from
	// another replica (and Resync) until cancel is called. fn runs on
	// the bus's goroutine: it must return quickly.
	Subscribe(topic string, fn func(payload string)) (cancel func())
}

// Local is the bus of a server alone on its store: nothing to send, and
// nothing arrives.
type Local struct{}

// InTx does nothing.
func (Local) InTx(Exec, ...Msg) error { return nil }

// Send does nothing.
func (Local) Send(context.Context, ...Msg) error { return nil }

// Subscribe never calls fn.
func (Local) Subscribe(string, func(string)) func() { return func() {} }

// maxPayload keeps a notification under PostgreSQL's 8000-byte limit,
// with room for the sender and topic.
const maxPayload = 7000

// Lines joins items one a line into payloads of at most maxPayload
// bytes each, as messages on topic (a client-wide upgrade wakes
// thousands of sites in a few notifications). An item longer than the
// limit travels alone.
func Lines(topic string, items []string) []Msg {
	var out []Msg
	var b strings.Builder
	for _, it := range items {
		if b.Len() > 0 && b.Len()+1+len(it) > maxPayload {
			out = append(out, Msg{topic, b.String()})
			b.Reset()
		}
		if b.Len() > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(it)
	}
	if b.Len() > 0 {
		out = append(out, Msg{topic, b.String()})
	}
	return out
}

// subs is the subscribers of each topic; its zero value is ready.
type subs struct {
	mu  sync.Mutex
	fns map[string]map[int]func(string)
	n   int
}

func (s *subs) subscribe(topic string, fn func(string)) func() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fns == nil {
		s.fns = map[string]map[int]func(string){}
	}
	if s.fns[topic] == nil {
		s.fns[topic] = map[int]func(string){}
	}
	s.n++
	id := s.n
	s.fns[topic][id] = fn
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.fns[topic], id)
	}
}

// deliver calls topic's subscribers with payload; topic "" means all.
func (s *subs) deliver(topic, payload string) {
	s.mu.Lock()
	var fns []func(string)
	for t, m := range s.fns {
		if topic == "" || t == topic {
			for _, fn := range m {
				fns = append(fns, fn)
			}
		}
	}
	s.mu.Unlock()
	for _, fn := range fns {
		fn(payload)
	}
}
