package store

// What an agent's first check-in on a replica reads: as little as can be
// (at 100,000 agents connecting, each read waits for one of a replica's
// few read connections).

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestSiteWindowsReadOnceForAllSites: the windows are read once for every
// site, not once per site: once one site's window was looked up, another
// site's (its own, or its client's, or none) answers with every
// connection of the read pool taken, as 100,000 agents' first check-ins
// keep it.
func TestSiteWindowsReadOnceForAllSites(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	now := time.Now()
	for _, w := range []struct{ scope, name, weekly string }{{ScopeClient, "acme", "Sat 02:00-06:00"}, {ScopeSite, "acme-2", "Sun 01:00-03:00"}} {
		if err := s.SetWindow(ctx, now, w.scope, w.name, []string{w.weekly}, "UTC", Audit{Actor: "t", Action: "window.set"}); err != nil {
			t.Fatal(err)
		}
	}
	if w, err := s.SiteWindow(ctx, "acme-1", "acme"); err != nil || w.Client != "acme" {
		t.Fatalf("acme-1's window: %+v, %v", w, err)
	}
	bounded := readPoolTaken(t, s)
	for _, c := range []struct{ site, client, want string }{
		{"acme-2", "acme", "site acme-2 Sun 01:00-03:00"},
		{"acme-3", "acme", "client acme Sat 02:00-06:00"},
		{"globex-1", "globex", "none"},
	} {
		w, err := s.SiteWindow(bounded, c.site, c.client)
		got := "none"
		switch {
		case err == nil && w.Site != "":
			got = "site " + w.Site + " " + strings.Join(w.Weekly, ",")
		case err == nil:
			got = "client " + w.Client + " " + strings.Join(w.Weekly, ",")
		case !errors.Is(err, ErrNotFound):
			got = err.Error()
		}
		if got != c.want {
			t.Errorf("window of %s (%s) with the read pool taken: %s, want %s", c.site, c.client, got, c.want)
		}
	}
}

// readPoolTaken takes every connection of s's read pool until the test
// ends (takeReadPool) and returns a context that bounds what waits for
// one (so that such a wait fails the test
// rather than hanging it).
func readPoolTaken(t *testing.T, s *Store) context.Context {
	t.Helper()
	takeReadPool(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestCredentialLookupKnowsTheClient: a replica that looked up an agent's
// credential (the agent enrolled through another) knows the site's
// client without another read.
func TestCredentialLookupKnowsTheClient(t *testing.T) {
	a, b := openTwo(t)
	enrollSite(t, a, "s1", "cred-1")
	ctx := context.Background()
	if site, err := b.SiteByCredential(ctx, "cred-1"); err != nil || site != "s1" {
		t.Fatalf("credential on the other replica: %q, %v", site, err)
	}
	bounded := readPoolTaken(t, b)
	if client, err := b.SiteClient(bounded, "s1"); err != nil || client != "c" {
		t.Errorf("client of s1 with the read pool taken: %q, %v; want c", client, err)
	}
}
