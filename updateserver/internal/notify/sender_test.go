package notify

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/fleet"
	"github.com/dropless/dropless/updateserver/internal/store"
	"github.com/dropless/dropless/updateserver/internal/store/storetest"
)

// receiver is a real HTTP endpoint on loopback that verifies every
// request's signature and answers what answer says for each attempt.
type receiver struct {
	t      *testing.T
	secret string
	answer func(n int, id string) (status int, retryAfter string)

	mu       sync.Mutex
	attempts map[string]int // webhook-id → attempts
	ok       map[string]Event
	srv      *httptest.Server
}

func newReceiver(t *testing.T, answer func(n int, id string) (int, string)) *receiver {
	r := &receiver{t: t, secret: NewSecret(), answer: answer, attempts: map[string]int{}, ok: map[string]Event{}}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		if err := Verify(r.secret, req.Header, body, time.Now(), 5*time.Minute); err != nil {
			t.Errorf("receiver: %v", err)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		id := req.Header.Get(HeaderID)
		r.mu.Lock()
		r.attempts[id]++
		n := r.attempts[id]
		r.mu.Unlock()
		status, ra := r.answer(n, id)
		if ra != "" {
			w.Header().Set("Retry-After", ra)
		}
		w.WriteHeader(status)
		if status/100 == 2 {
			var e Event
			if err := json.Unmarshal(body, &e); err != nil {
				t.Errorf("receiver: body is not JSON: %v", err)
			}
			r.mu.Lock()
			r.ok[id] = e
			r.mu.Unlock()
		}
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) delivered() map[string]Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]Event{}
	for k, v := range r.ok {
		out[k] = v
	}
	return out
}

func openStore(t *testing.T) *store.Store {
	st, err := store.Open(context.Background(), storetest.Path(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(30 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func runSender(t *testing.T, st *store.Store) *Sender {
	ctx, cancel := context.WithCancel(context.Background())
	s := &Sender{Store: st, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Poll: 50 * time.Millisecond, Client: &http.Client{Timeout: time.Minute}}
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return s
}

// A receiver that fails first (503 with Retry-After) gets the event again
// with the same webhook-id, signed; only the events its patterns match
// reach it; webhook list shows the outcome.
func TestSenderRetriesWithTheSameID(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	rcv := newReceiver(t, func(n int, _ string) (int, string) {
		if n == 1 {
			return http.StatusServiceUnavailable, "1"
		}
		return http.StatusOK, ""
	})
	hook, err := st.CreateWebhook(ctx, time.Now(), store.NewWebhook{URL: rcv.srv.URL, Events: []string{"job.*"}, Secret: rcv.secret, By: "test"})
	if err != nil {
		t.Fatal(err)
	}
	job, _ := JobEvent(fleet.JobEvent{Type: fleet.JobEnded, At: time.Now(), JobID: "j1", Site: "acme-prod", Client: "acme", Product: "erp",
		From: "1.0.0", To: "1.1.0", Result: protocol.ResultRolledBack, Reason: "health check failed: <b>500</b>"})
	rel := ReleasePublishedEvent(protocol.Release{Product: "erp", Version: "1.1.0"}, "ci", time.Now())
	if err := st.Enqueue(ctx, time.Now(), []store.OutboxEvent{job.Outbox(), rel.Outbox()}); err != nil {
		t.Fatal(err)
	}
	runSender(t, st)
	waitFor(t, "the job event delivered", func() bool { return len(rcv.delivered()) == 1 })

	got := rcv.delivered()[job.ID]
	if got.Type != JobRolledBack || got.Text == "" || !strings.Contains(got.Text, "&lt;b&gt;500&lt;/b&gt;") {
		t.Errorf("delivered %+v: want job.rolled_back with the reason escaped in its text", got)
	}
	rcv.mu.Lock()
	if n := rcv.attempts[job.ID]; n != 2 {
		t.Errorf("the job event was attempted %d times with its webhook-id, want 2 (503, then 200)", n)
	}
	if n := rcv.attempts[rel.ID]; n != 0 {
		t.Errorf("the release event reached a job.* webhook %d times", n)
	}
	rcv.mu.Unlock()
	waitFor(t, "webhook list to show the success", func() bool {
		h, err := st.Webhook(ctx, hook.ID)
		return err == nil && h.LastStatus == "200" && h.Failures == 0 && h.Pending == 0
	})
}

// A receiver that answers 410 Gone disables its webhook; nothing more is
// sent to it.
func TestSenderDisablesOnGone(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	rcv := newReceiver(t, func(int, string) (int, string) { return http.StatusGone, "" })
	hook, err := st.CreateWebhook(ctx, time.Now(), store.NewWebhook{URL: rcv.srv.URL, Secret: rcv.secret, By: "test"})
	if err != nil {
		t.Fatal(err)
	}
	e1 := ReleaseYankedEvent(protocol.Release{Product: "erp", Version: "1.1.0"}, "broken", "ci", time.Now())
	e2 := ReleasePromotedEvent(protocol.Release{Product: "erp", Version: "1.2.0"}, "stable", "ci", time.Now())
	if err := st.Enqueue(ctx, time.Now(), []store.OutboxEvent{e1.Outbox(), e2.Outbox()}); err != nil {
		t.Fatal(err)
	}
	s := runSender(t, st)
	waitFor(t, "the webhook disabled", func() bool {
		h, err := st.Webhook(ctx, hook.ID)
		return err == nil && h.DisabledAt != nil
	})
	s.Wake()
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	if rcv.attempts[e2.ID] != 0 || rcv.attempts[e1.ID] != 1 {
		t.Errorf("attempts %v: want only the first event, once", rcv.attempts)
	}
}

// roundTripFunc lets a test act between a real round trip and the
// sender reading its answer.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// A replica whose lease ends (or that is stopped) just as a receiver
// accepts an event still records the delivery: the replica taking the
// webhooks over does not send the event a second time.
func TestDeliveryAcceptedAsTheLeaseEndsIsNotSentAgain(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	rcv := newReceiver(t, func(int, string) (int, string) { return http.StatusOK, "" })
	if _, err := st.CreateWebhook(ctx, time.Now(), store.NewWebhook{URL: rcv.srv.URL, Secret: rcv.secret, By: "test"}); err != nil {
		t.Fatal(err)
	}
	e := ReleaseYankedEvent(protocol.Release{Product: "erp", Version: "1.1.0"}, "broken", "ci", time.Now())
	if err := st.Enqueue(ctx, time.Now(), []store.OutboxEvent{e.Outbox()}); err != nil {
		t.Fatal(err)
	}

	// The first holder: its lease ends once the receiver has answered 200.
	held, loseLease := context.WithCancel(ctx)
	first := &Sender{Store: st, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Poll: time.Hour,
		Client: &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			resp, err := http.DefaultTransport.RoundTrip(r)
			loseLease()
			return resp, err
		})}}
	first.Run(held) // returns once the lease is lost and the attempt is over

	if n := len(rcv.delivered()); n != 1 {
		t.Fatalf("the receiver accepted %d events, want 1", n)
	}
	// The next holder finds nothing due (had the row been left due, it
	// would send it, and only then would the outbox be empty).
	next := runSender(t, st)
	next.Wake()
	waitFor(t, "the outbox empty", func() bool {
		due, err := st.DueDeliveries(ctx, time.Now(), 10)
		return err == nil && len(due) == 0
	})
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	if n := rcv.attempts[e.ID]; n != 1 {
		t.Errorf("the event reached the receiver %d times, want once", n)
	}
}

func TestBackoffGrowsWithJitterUpToTheCap(t *testing.T) {
	for a := range 40 {
		d := Backoff(a, time.Minute)
		full := min(time.Second<<min(a, 30), time.Minute)
		if d < full/2 || d > full {
			t.Fatalf("Backoff(%d) = %s, want within [%s, %s]", a, d, full/2, full)
		}
	}
}

// A receiver that never answers holds up only its own webhook: another
// webhook gets events that arrive meanwhile.
func TestSlowReceiverHoldsUpOnlyItself(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	hung := make(chan struct{})
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case hung <- struct{}{}:
		default:
		}
		<-release
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(release) })
	fast := newReceiver(t, func(int, string) (int, string) { return http.StatusNoContent, "" })
	for _, u := range []struct{ url, secret string }{{slow.URL, NewSecret()}, {fast.srv.URL, fast.secret}} {
		if _, err := st.CreateWebhook(ctx, time.Now(), store.NewWebhook{URL: u.url, Secret: u.secret, By: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	enqueue := func() Event {
		e := ReleasePublishedEvent(protocol.Release{Product: "erp", Version: "1.0.0"}, "ci", time.Now())
		if err := st.Enqueue(ctx, time.Now(), []store.OutboxEvent{e.Outbox()}); err != nil {
			t.Fatal(err)
		}
		return e
	}
	first := enqueue()
	s := runSender(t, st)
	<-hung // the slow receiver holds the first event
	second := enqueue()
	s.Wake()
	waitFor(t, "both events at the fast receiver", func() bool {
		got := fast.delivered()
		_, ok1 := got[first.ID]
		_, ok2 := got[second.ID]
		return ok1 && ok2
	})
}

// A receiver answering 429 with Retry-After is not tried again before
// then.
func TestSenderHonoursRetryAfter(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	rcv := newReceiver(t, func(int, string) (int, string) { return http.StatusTooManyRequests, "3600" })
	hook, err := st.CreateWebhook(ctx, time.Now(), store.NewWebhook{URL: rcv.srv.URL, Secret: rcv.secret, By: "test"})
	if err != nil {
		t.Fatal(err)
	}
	e := ReleaseYankedEvent(protocol.Release{Product: "erp", Version: "1.0.0"}, "", "ci", time.Now())
	if err := st.Enqueue(ctx, time.Now(), []store.OutboxEvent{e.Outbox()}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	runSender(t, st)
	waitFor(t, "the 429 recorded", func() bool {
		h, err := st.Webhook(ctx, hook.ID)
		return err == nil && h.LastStatus == "429" && h.Failures == 1 && h.Pending == 1
	})
	next, ok, err := st.NextDue(ctx)
	if err != nil || !ok || next.Before(start.Add(time.Hour)) {
		t.Fatalf("next attempt at %v (%t, %v): want an hour after the 429", next, ok, err)
	}
}

// The rollout events carry what a person needs: a paused one its reason.
func TestRolloutEvents(t *testing.T) {
	r := Rollout{RolloutID: "r-1", Product: "erp", Version: "3.2.0", Wave: 2, Waves: 3, Reason: "2 failures, more than --max-failures 1", By: "updateserver"}
	now := time.Now()
	for _, tt := range []struct {
		e        Event
		typ, has string
	}{
		{RolloutStarted(r, now), RolloutStartedType, "r-1"},
		{RolloutWaveStarted(r, now), RolloutWaveStartedType, "Wave 2 of 3"},
		{RolloutPaused(r, now), RolloutPausedType, "2 failures, more than --max-failures 1"},
		{RolloutCompleted(r, now), RolloutCompletedType, "erp 3.2.0"},
		{RolloutCancelled(r, now), RolloutCancelledType, "Cancelled"},
	} {
		var body struct {
			Type string  `json:"type"`
			Text string  `json:"text"`
			Data Rollout `json:"data"`
		}
		if err := json.Unmarshal(tt.e.Outbox().Body, &body); err != nil {
			t.Fatal(err)
		}
		if body.Type != tt.typ || !strings.Contains(body.Text, tt.has) || body.Data.RolloutID != "r-1" || !strings.HasPrefix(tt.e.ID, "msg_") {
			t.Errorf("%s: %+v, want type %s and %q in its text", tt.typ, body, tt.typ, tt.has)
		}
		if ValidPattern("rollout.*") != nil || !store.EventMatches([]string{"rollout.*"}, body.Type) || store.EventMatches([]string{"job.*"}, body.Type) {
			t.Errorf("%s: not matched by rollout.* alone", body.Type)
		}
	}
}
