package notify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/dropless/dropless/pkg/buildinfo"
	"github.com/dropless/dropless/updateserver/internal/store"
)

// Sender delivers the store's webhook outbox. Run it once per server.
type Sender struct {
	Store *store.Store
	Log   *slog.Logger
	// Client sends the requests; nil: one that times out after 10s and
	// follows no redirect (a 3xx is a failed attempt).
	Client *http.Client
	// MaxBackoff caps the wait between attempts (default 15m).
	MaxBackoff time.Duration
	// Poll is how often the outbox is read without a Wake (default 2s).
	Poll time.Duration
	// Attempted, when set, is told each attempt's outcome: "delivered",
	// "failed" or "gone" (410: the webhook is disabled).
	Attempted func(outcome string)

	once sync.Once
	wake chan struct{}

	mu      sync.Mutex
	busy    map[int64]bool // webhooks with a delivery goroutine running
	workers sync.WaitGroup
}

// Outcomes of an attempt.
const (
	OutcomeDelivered = "delivered"
	OutcomeFailed    = "failed"
	OutcomeGone      = "gone"
)

func (s *Sender) init() {
	s.once.Do(func() {
		s.wake = make(chan struct{}, 1)
		s.busy = map[int64]bool{}
		if s.Client == nil {
			s.Client = &http.Client{
				Timeout:       10 * time.Second,
				CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
			}
		}
		if s.MaxBackoff <= 0 {
			s.MaxBackoff = 15 * time.Minute
		}
		if s.Poll <= 0 {
			s.Poll = 2 * time.Second
		}
		if s.Log == nil {
			s.Log = slog.Default()
		}
	})
}

// Wake makes Run read the outbox now: call it after a change enqueued
// events. It never blocks.
func (s *Sender) Wake() {
	s.init()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// perHook bounds the rows of one webhook read in one round.
const perHook = 50

// Run delivers until ctx ends, then waits for the attempts in flight. Each
// round reads the due rows, oldest first, and hands each webhook's to a
// goroutine of its own (unless one is still busy with that webhook's
// earlier rows), which sends them in order and wakes the next round: a
// slow or dead receiver holds up only its own webhook. Every row keeps
// its own backoff: one event a receiver refuses never holds up the
// others (so after a failure events may arrive out of order: receivers
// order by the body's timestamp), and a dead receiver gets each waiting
// event about once per backoff.
func (s *Sender) Run(ctx context.Context) {
	s.init()
	defer s.workers.Wait()
	for {
		if err := s.round(ctx); err != nil && ctx.Err() == nil {
			s.Log.Warn("reading the webhook outbox failed", "err", err)
		}
		t := time.NewTimer(s.Poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-s.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// round starts delivering the rows due now.
func (s *Sender) round(ctx context.Context) error {
	due, err := s.Store.DueDeliveries(ctx, time.Now(), perHook)
	if err != nil {
		return err
	}
	byHook := map[int64][]store.Delivery{}
	var order []int64
	for _, d := range due {
		if _, ok := byHook[d.WebhookID]; !ok {
			order = append(order, d.WebhookID)
		}
		byHook[d.WebhookID] = append(byHook[d.WebhookID], d)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range order {
		if s.busy[id] {
			continue
		}
		s.busy[id] = true
		s.workers.Add(1)
		go func() {
			defer s.workers.Done()
			all := true
			for _, d := range byHook[id] {
				if all = s.deliver(ctx, d); !all {
					break
				}
			}
			s.mu.Lock()
			delete(s.busy, id)
			s.mu.Unlock()
			if all && ctx.Err() == nil {
				s.Wake() // more may be due: a backlog, or rows that came meanwhile
			}
		}()
	}
	return nil
}

// deliver makes one attempt and records its outcome; it reports whether
// the webhook's next row may follow (not when it is gone, or the server
// is stopping).
func (s *Sender) deliver(ctx context.Context, d store.Delivery) bool {
	status, retryAfter, err := s.post(ctx, d)
	delivered := err == nil && status >= 200 && status < 300
	if ctx.Err() != nil && !delivered {
		return false // shutting down: the row stays due for the next start
	}
	now := time.Now()
	log := s.Log.With("webhook", d.WebhookID, "event", d.Type, "webhook_id", d.MsgID, "attempt", d.Attempts+1)
	switch {
	case delivered:
		// Recorded even when ctx ended meanwhile (the server stopping,
		// the lease lost to another replica): the receiver has the
		// event, and a row left due would reach it a second time.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := s.Store.Delivered(rctx, now, d, strconv.Itoa(status)); err != nil {
			log.Warn("recording a webhook delivery failed; it will be sent again", "err", err)
			return false
		}
		s.attempted(OutcomeDelivered)
		return ctx.Err() == nil
	case err == nil && status == http.StatusGone:
		log.Warn("the webhook's receiver answered 410 Gone: the webhook is disabled (delete it, or create it again)", "url", d.URL)
		if err := s.Store.DisableWebhook(ctx, now, d, "410"); err != nil {
			log.Warn("disabling the webhook failed", "err", err)
		}
		s.attempted(OutcomeGone)
		return false
	}
	text := strconv.Itoa(status)
	if err != nil {
		text = err.Error()
	}
	wait := Backoff(d.Attempts, s.MaxBackoff)
	if retryAfter > wait {
		wait = min(retryAfter, time.Hour)
	}
	next := now.Add(wait)
	log.Info("webhook delivery failed; will retry", "status", text, "retry_in", wait.Round(time.Millisecond))
	if err := s.Store.DeliveryFailed(ctx, now, d, text, next); err != nil {
		log.Warn("recording a failed webhook attempt failed", "err", err)
		return false
	}
	s.attempted(OutcomeFailed)
	return true
}

func (s *Sender) attempted(outcome string) {
	if s.Attempted != nil {
		s.Attempted(outcome)
	}
}

// post sends d once, signed at the time of this attempt, and returns the
// status and any Retry-After (429, 503).
func (s *Sender) post(ctx context.Context, d store.Delivery) (int, time.Duration, error) {
	ts := time.Now()
	sig, err := Sign(d.Secret, d.MsgID, ts, d.Body)
	if err != nil {
		return 0, 0, fmt.Errorf("sign: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.URL, bytes.NewReader(d.Body))
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "updateserver/"+buildinfo.Version)
	req.Header.Set(HeaderID, d.MsgID)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	req.Header.Set(HeaderSignature, sig)
	resp, err := s.Client.Do(req)
	if err != nil {
		var ue interface{ Unwrap() error }
		if errors.As(err, &ue) && ue.Unwrap() != nil {
			err = ue.Unwrap() // drop the repeated method and URL
		}
		return 0, 0, err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	var ra time.Duration
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		ra = retryAfter(resp.Header.Get("Retry-After"), ts)
	}
	return resp.StatusCode, ra, nil
}

// retryAfter parses a Retry-After header: seconds or an HTTP date.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil && n > 0 {
		return time.Duration(min(n, 86400)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0)
	}
	return 0
}

// Backoff is the wait after a failed attempt that followed attempts
// earlier ones: 1s doubling up to max, the upper half randomised
// (jitter), so receivers that come back are not hit by every server at
// the same instant.
func Backoff(attempts int, max time.Duration) time.Duration {
	d := time.Second << min(attempts, 30)
	if d <= 0 || d > max {
		d = max
	}
	return d/2 + rand.N(d/2+1)
}
