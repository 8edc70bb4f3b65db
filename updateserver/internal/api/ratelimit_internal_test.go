package api

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// fakeClock is a clock the test moves.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

// TestLimiterMemoryIsBounded: failures from a million addresses keep at
// most MaxKeys entries, idle ones are forgotten, and a key's bucket is
// not reset by the sweep while it is still in use.
func TestLimiterMemoryIsBounded(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	var log strings.Builder
	lim := Limits{AuthFailures: Rate{PerSecond: 1, Burst: 2}, Checkins: Rate{PerSecond: 1, Burst: 2}, Events: Rate{PerSecond: 1, Burst: 2}, MaxKeys: 1000}
	ls := newLimiters(lim, slog.New(slog.NewTextHandler(&log, nil)), clock.now)
	for i := range 1_000_000 {
		ls.authFailed(fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), "/api/v1/agent/checkin")
	}
	if n := ls.auth.size(); n > lim.MaxKeys {
		t.Fatalf("%d entries for a million sources, want at most %d", n, lim.MaxKeys)
	}
	// The map is full: new sources share one bucket, and are refused
	// together once it is empty.
	if ok, _ := ls.authFailed("192.0.2.1", "/"); ok {
		t.Error("a new source past MaxKeys was not limited with the others")
	}
	// A source in use keeps its (empty) bucket across sweeps.
	busy := "10.0.0.0"
	for range 3 {
		clock.t = clock.t.Add(time.Second)
		ls.authFailed(busy, "/")
		ls.authFailed(busy, "/")
	}
	if ok, _ := ls.authFailed(busy, "/"); ok {
		t.Error("a busy source was not limited")
	}
	// Idle long enough, everything is forgotten at the next sweep.
	clock.t = clock.t.Add(10 * time.Minute)
	ls.authFailed("198.51.100.1", "/")
	if n := ls.auth.size(); n != 1 {
		t.Errorf("%d entries after every source went idle, want 1", n)
	}
	// Logging stayed bounded: about one line per second of fake time.
	if lines := strings.Count(log.String(), "authentication refused"); lines > 50 {
		t.Errorf("%d log lines", lines)
	}
}

// TestEveryAgentHasItsOwnBucket: the per-credential limiters hold the
// whole fleet. With the address limiter's cap (10,000) they did not, and
// the agents past it shared one bucket of one check-in a second.
func TestEveryAgentHasItsOwnBucket(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	ls := newLimiters(DefaultLimits, slog.New(slog.DiscardHandler), clock.now)
	const agents = 30_000
	for i := range agents {
		if ok, _ := ls.checkins.allow(fmt.Sprintf("agent-%d", i)); !ok {
			t.Fatalf("agent %d of %d refused its first check-in", i, agents)
		}
	}
	if n := ls.checkins.size(); n != agents {
		t.Errorf("%d check-in buckets for %d agents", n, agents)
	}
}
