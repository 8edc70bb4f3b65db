package publish

import "sync"

// ReleaseChange says what happened to a release, once the change is
// committed.
type ReleaseChange struct {
	// Kind is "publish", "promote" or "yank".
	Kind             string
	Product, Version string
	// Channel is the channel a promote added ("" for the others).
	Channel string
}

// Kinds of ReleaseChange.
const (
	ChangePublish = "publish"
	ChangePromote = "promote"
	ChangeYank    = "yank"
)

// subscribers are the functions told about committed release changes.
type subscribers struct {
	mu  sync.Mutex
	fns map[int]func(ReleaseChange)
	n   int
}

// Subscribe calls fn, on the goroutine that made the change and after
// it committed, with every release change from now on until cancel is
// called. fn must return quickly (hand the change to a goroutine of its
// own): it delays the answer to the release team.
func (p *Publisher) Subscribe(fn func(ReleaseChange)) (cancel func()) {
	s := &p.subs
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fns == nil {
		s.fns = map[int]func(ReleaseChange){}
	}
	s.n++
	id := s.n
	s.fns[id] = fn
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.fns, id)
	}
}

func (p *Publisher) changed(c ReleaseChange) {
	p.subs.mu.Lock()
	fns := make([]func(ReleaseChange), 0, len(p.subs.fns))
	for _, fn := range p.subs.fns {
		fns = append(fns, fn)
	}
	p.subs.mu.Unlock()
	for _, fn := range fns {
		fn(c)
	}
}
