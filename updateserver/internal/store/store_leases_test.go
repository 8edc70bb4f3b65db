package store

import (
	"context"
	"testing"
	"time"
)

// TestLeaseOneHolderAtATime: a lease has one holder until it expires or
// is released; its holder renews it; another takes it over after.
func TestLeaseOneHolderAtATime(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	acquire := func(at time.Time, holder string) bool {
		t.Helper()
		ok, err := s.AcquireLease(ctx, at, "resign", holder, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !acquire(now, "a") {
		t.Fatal("a free lease was refused")
	}
	if acquire(now.Add(time.Second), "b") {
		t.Fatal("b took a's unexpired lease")
	}
	if !acquire(now.Add(8*time.Second), "a") {
		t.Fatal("a could not renew its own lease")
	}
	// Renewed at 8s: it lasts until 18s, not 10s.
	if acquire(now.Add(12*time.Second), "b") {
		t.Fatal("b took a's renewed lease")
	}
	if !acquire(now.Add(18*time.Second+time.Nanosecond), "b") {
		t.Fatal("b could not take a's expired lease")
	}
	if acquire(now.Add(19*time.Second), "a") {
		t.Fatal("a took its lease back from b")
	}
	// Releasing is only the holder's.
	if err := s.ReleaseLease(ctx, "resign", "a"); err != nil {
		t.Fatal(err)
	}
	if acquire(now.Add(20*time.Second), "a") {
		t.Fatal("a's release freed b's lease")
	}
	if err := s.ReleaseLease(ctx, "resign", "b"); err != nil {
		t.Fatal(err)
	}
	if !acquire(now.Add(20*time.Second), "a") {
		t.Fatal("a released lease was refused")
	}
	ls, err := s.Leases(ctx)
	if err != nil || len(ls) != 1 || ls[0].Holder != "a" || !ls[0].Expires.Equal(now.Add(30*time.Second)) {
		t.Fatalf("leases %+v, %v", ls, err)
	}
}
