package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
)

// TestWindowsPersist: a site's own window wins over its client's, both
// survive a restart, clearing one falls back to the other, and every
// change is audited.
func TestWindowsPersist(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t)
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	if _, err := s.SiteWindow(ctx, "acme-prod", "acme"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("no window yet: err %v, want ErrNotFound", err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.SetWindow(ctx, now, ScopeClient, "acme", []string{"Sun 01:00-05:00"}, "UTC", Audit{Actor: "sup", Action: "window.set", Object: "client acme"}))
	must(s.SetWindow(ctx, now, ScopeSite, "acme-prod", []string{"Sat 22:00-Sun 04:00", "Wed 01:00-02:00"}, "Europe/Berlin", Audit{Actor: "sup", Action: "window.set", Object: "site acme-prod"}))
	s.Close()
	s, err := Open(ctx, path)
	must(err)
	defer s.Close()
	w, err := s.SiteWindow(ctx, "acme-prod", "acme")
	must(err)
	if w.Site != "acme-prod" || w.TZ != "Europe/Berlin" || len(w.Weekly) != 2 || w.Weekly[1] != "Wed 01:00-02:00" || w.UpdatedBy != "sup" {
		t.Fatalf("site window = %+v, want the site's own", w)
	}
	if w, _ := s.SiteWindow(ctx, "acme-test", "acme"); w.Client != "acme" || w.Weekly[0] != "Sun 01:00-05:00" {
		t.Fatalf("another site of acme gets %+v, want the client's window", w)
	}
	must(s.ClearWindow(ctx, now, ScopeSite, "acme-prod", Audit{Actor: "sup", Action: "window.clear", Object: "site acme-prod"}))
	if w, _ := s.SiteWindow(ctx, "acme-prod", "acme"); w.Client != "acme" {
		t.Fatalf("after clearing the site's window it gets %+v, want the client's", w)
	}
	if err := s.ClearWindow(ctx, now, ScopeSite, "acme-prod", Audit{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("clearing twice: err %v, want ErrNotFound", err)
	}
	all, _ := s.Windows(ctx)
	if len(all) != 1 {
		t.Fatalf("Windows = %+v, want the client's only", all)
	}
	log, _ := s.AuditLog(ctx, AuditQuery{Limit: 10})
	if len(log) != 3 {
		t.Fatalf("audit log has %d entries, want 3 (two sets, one clear)", len(log))
	}
}

func TestFreezesPersist(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	now := time.Date(2025, 12, 1, 0, 0, 0, 0, time.UTC)
	mk := func(client string, from, to time.Time, reason string) int64 {
		t.Helper()
		id, err := s.CreateFreeze(ctx, now, protocol.Freeze{Client: client, From: from, To: to, Reason: reason, CreatedBy: "sup"},
			Audit{Actor: "sup", Action: "freeze.create", Object: "freeze"})
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	ended := mk("", now.Add(-48*time.Hour), now.Add(-time.Hour), "over")
	yearEnd := mk("acme", now.Add(29*24*time.Hour), now.Add(40*24*time.Hour), "year-end closing")
	all := mk("", now.Add(-time.Hour), now.Add(time.Hour+500*time.Millisecond), "release week")
	got, err := s.Freezes(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID != all || got[1].ID != yearEnd || got[1].Client != "acme" || got[1].Reason != "year-end closing" ||
		!got[0].To.Equal(now.Add(time.Hour+500*time.Millisecond)) {
		t.Fatalf("Freezes = %+v, want the server-wide one then acme's, without the ended %d", got, ended)
	}
	if err := s.DeleteFreeze(ctx, now, all, Audit{Actor: "sup", Action: "freeze.delete"}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteFreeze(ctx, now, all, Audit{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleting twice: %v, want ErrNotFound", err)
	}
	if got, _ := s.Freezes(ctx, now); len(got) != 1 {
		t.Fatalf("after delete: %+v", got)
	}
}
