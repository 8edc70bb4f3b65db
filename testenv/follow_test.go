//go:build e2e && unix

package testenv

import (
	"strings"
	"testing"

	"github.com/dropless/dropless/pkg/protocol"
)

// TestFollowChannel: real agents follow channel lts, one pinned to the
// 1.0 line. A release published on lts upgrades the sites whose pin
// admits it, and only those, with no one running upgrade: the unpinned
// site through the hop its path needs (1.0.1, which is not on lts);
// a hot fix on 1.0 then reaches the pinned site; a site that follows
// nothing stays where it is. Each job records the app's downtime.
func TestFollowChannel(t *testing.T) {
	t.Parallel()
	env := New(t)
	env.Publish(t, "1.0.0", Healthy)
	env.Publish(t, "1.0.1", Healthy, "--upgrade-from", ">= 1.0.0, < 1.0.1")
	pinned, free, still := env.NewSite(t, "acme-pinned", "acme"), env.NewSite(t, "acme-free", "acme"), env.NewSite(t, "acme-still", "acme")
	for _, s := range []*Site{pinned, free, still} {
		s.Upgrade(t, "1.0.0")
	}
	for _, s := range []*Site{pinned, free, still} {
		s.AwaitHealthy(t, "1.0.0")
		s.AwaitJob(t)
	}
	env.MustCLI(t, "sites", "follow", "--site", pinned.Name, "--channel", "lts", "--pin", "~> 1.0")
	env.MustCLI(t, "sites", "follow", "--site", free.Name, "--channel", "lts")

	// 1.1.0 on lts upgrades only from 1.0.1: the unpinned site goes
	// 1.0.0 -> 1.0.1 -> 1.1.0; the pin (the 1.0 line) refuses it.
	env.Publish(t, "1.1.0", Healthy, "--channel", "lts", "--upgrade-from", ">= 1.0.1, < 1.1.0")
	free.AwaitHealthy(t, "1.1.0")
	h := free.History(t)
	if len(h) < 3 || h[0].From != "1.0.1" || h[0].To != "1.1.0" || h[1].From != "1.0.0" || h[1].To != "1.0.1" {
		t.Fatalf("free's history %+v, want the hops 1.0.0 -> 1.0.1 -> 1.1.0", h)
	}
	for _, j := range h[:2] {
		if j.Result != protocol.ResultSucceeded || j.CreatedBy != "follow:lts" || j.DowntimeMS == nil || *j.DowntimeMS <= 0 {
			t.Errorf("hop %s -> %s: %s, created by %q, downtime %v; want succeeded, made by following, with its downtime", j.From, j.To, j.Result, j.CreatedBy, j.DowntimeMS)
		}
	}
	if h := pinned.History(t); len(h) != 1 {
		t.Fatalf("the pinned site got a job: %+v", h[0])
	}

	// A hot fix on the 1.0 line, on lts: the pinned site takes it; the
	// unpinned one is past it.
	env.Publish(t, "1.0.2", Healthy, "--channel", "lts", "--upgrade-from", ">= 1.0.0, < 1.0.2")
	pinned.AwaitHealthy(t, "1.0.2")
	if j := pinned.AwaitJob(t); j.Result != protocol.ResultSucceeded || j.CreatedBy != "follow:lts" {
		t.Fatalf("pinned's job: %s by %q", j.Result, j.CreatedBy)
	}
	if h := free.History(t); h[0].To != "1.1.0" {
		t.Errorf("free got a job to %s after 1.0.2, want none", h[0].To)
	}
	if h := still.History(t); len(h) != 1 {
		t.Errorf("a site that follows nothing got a job: %+v", h[0])
	}
	if v, err := still.AppVersion(); err != nil || v != "1.0.0" {
		t.Errorf("the site that follows nothing runs %q (%v), want 1.0.0", v, err)
	}
	list := env.MustCLI(t, "sites", "list")
	if !strings.Contains(list, "lts ~> 1.0") || !strings.Contains(list, "succeeded") {
		t.Errorf("sites list lacks the channel and pin or the last result:\n%s", list)
	}
}
