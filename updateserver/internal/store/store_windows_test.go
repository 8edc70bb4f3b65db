package store

import (
	"context"
	"database/sql"
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
	var conns []*sql.Conn
	for range s.DB().Stats().MaxOpenConnections {
		c, err := s.DB().Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	// A bound, so that a lookup waiting for the pool fails the test
	// rather than hanging it.
	bounded, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
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
