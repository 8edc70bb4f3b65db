// Package lease runs a periodic job on one replica at a time: the
// replica that holds the job's lease in the shared store runs it, renews
// the lease at a third of its TTL, and stops the job when a renewal
// fails (the lease may have passed to another replica). The others wait
// and take the lease over once it is released or expires.
//
// On a store only one server uses (SQLite: the data directory's lock
// already keeps a second server out), Always holds every lease without
// touching the store.
package lease

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"
)

// Store keeps the leases (store.Store).
type Store interface {
	AcquireLease(ctx context.Context, now time.Time, name, holder string, ttl time.Duration) (bool, error)
	ReleaseLease(ctx context.Context, name, holder string) error
}

// DefaultTTL is how long a lease lasts without a renewal: how long a
// killed replica's jobs wait before another replica takes them over.
const DefaultTTL = 15 * time.Second

// Runner runs jobs under leases.
type Runner struct {
	// Store keeps the leases; nil holds every lease at once (a single
	// server).
	Store Store
	// Holder names this replica in the leases (Holder() by default).
	Holder string
	TTL    time.Duration // DefaultTTL when 0
	Log    *slog.Logger

	mu   sync.Mutex
	held map[string]bool
}

// Always holds every lease: one server alone on its store.
func Always() *Runner { return &Runner{} }

// Holder is a name for this replica: host, pid and a random suffix, so a
// restarted process never mistakes its predecessor's lease for its own.
func Holder() string {
	host, _ := os.Hostname()
	b := make([]byte, 4)
	rand.Read(b)
	return host + "/" + strconv.Itoa(os.Getpid()) + "/" + hex.EncodeToString(b)
}

func (r *Runner) ttl() time.Duration {
	if r.TTL > 0 {
		return r.TTL
	}
	return DefaultTTL
}

// Held lists the leases this replica holds now (for /metrics and logs).
func (r *Runner) Held() map[string]bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]bool{}
	for k, v := range r.held {
		out[k] = v
	}
	return out
}

func (r *Runner) setHeld(name string, held bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.held == nil {
		r.held = map[string]bool{}
	}
	r.held[name] = held
}

// Run runs job whenever this replica holds the lease name, until ctx
// ends: job gets a context that ends when ctx does or when the lease is
// lost, and must return then. A job that returns on its own while the
// lease is held is started again after a pause of a third of the TTL.
// Run releases the lease when it returns.
func (r *Runner) Run(ctx context.Context, name string, job func(context.Context)) {
	if r.Store == nil {
		r.setHeld(name, true)
		job(ctx)
		return
	}
	every := r.ttl() / 3
	for ctx.Err() == nil {
		got, err := r.Store.AcquireLease(ctx, time.Now(), name, r.Holder, r.ttl())
		if err != nil && ctx.Err() == nil && r.Log != nil {
			r.Log.Warn("taking a lease failed", "lease", name, "err", err)
		}
		if got {
			r.hold(ctx, name, every, job)
		}
		select {
		case <-ctx.Done():
		case <-time.After(every):
		}
	}
}

// hold runs job while the lease is renewed, then releases it.
func (r *Runner) hold(ctx context.Context, name string, every time.Duration, job func(context.Context)) {
	if r.Log != nil {
		r.Log.Info("lease taken: this replica runs the job", "lease", name, "holder", r.Holder)
	}
	r.setHeld(name, true)
	jctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		job(jctx)
	}()
	t := time.NewTicker(every)
	defer t.Stop()
	lost := false
loop:
	for {
		select {
		case <-done:
			break loop
		case <-ctx.Done():
			break loop
		case <-t.C:
			ok, err := r.Store.AcquireLease(ctx, time.Now(), name, r.Holder, r.ttl())
			if !ok && ctx.Err() == nil {
				lost = true
				if r.Log != nil {
					r.Log.Warn("lease lost: stopping the job", "lease", name, "err", err)
				}
				break loop
			}
		}
	}
	stop()
	<-done
	r.setHeld(name, false)
	if !lost {
		// Given up, not lost: the next holder need not wait out the TTL.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := r.Store.ReleaseLease(rctx, name, r.Holder); err != nil && r.Log != nil {
			r.Log.Warn("releasing a lease failed", "lease", name, "err", err)
		}
	}
}
