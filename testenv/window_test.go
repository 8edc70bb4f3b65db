//go:build e2e && unix

package testenv

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
)

// TestWindowOpensUpgrade: a site whose window opens at the next minute,
// in a zone that is not the machine's (Pacific/Chatham: UTC+12:45 or
// +13:45), starts its job once the window opens and not before; a
// freeze holds another site whose window is open, until --now overrides
// it.
func TestWindowOpensUpgrade(t *testing.T) {
	t.Parallel()
	env := New(t)
	env.Publish(t, "1.0.0", Healthy)
	env.Publish(t, "1.1.0", Healthy)
	env.Publish(t, "1.2.0", Healthy)
	prod := env.NewSite(t, "acme-prod", "acme")
	prod.Upgrade(t, "1.0.0")
	prod.AwaitHealthy(t, "1.0.0")
	prod.AwaitJob(t)

	zone := "Pacific/Chatham"
	if time.Local.String() == zone {
		zone = "Asia/Kathmandu"
	}
	loc, err := time.LoadLocation(zone)
	if err != nil {
		t.Fatal(err)
	}
	opens := time.Now().Truncate(time.Minute).Add(time.Minute)
	if time.Until(opens) < 10*time.Second {
		opens = opens.Add(time.Minute)
	}
	a, b := opens.In(loc), opens.Add(time.Hour).In(loc)
	rng := fmt.Sprintf("%s %02d:%02d-%s %02d:%02d", a.Weekday().String()[:3], a.Hour(), a.Minute(), b.Weekday().String()[:3], b.Hour(), b.Minute())
	env.MustCLI(t, "window", "set", "--site", "acme-prod", "--weekly", rng, "--tz", zone)
	env.MustCLI(t, "upgrade", "--site", "acme-prod", "--to", "1.1.0")
	if info := prod.Info(t); info.WindowOpen || info.NextWindow != opens.UTC().Format(time.RFC3339) {
		t.Fatalf("before the opening: window_open %t next_window %q, want closed until %s", info.WindowOpen, info.NextWindow, opens.UTC())
	}
	// The agent downloads the bundle ahead, while the app keeps running.
	Await(t, "the bundle downloaded ahead of the window", func() bool {
		m, _ := filepath.Glob(filepath.Join(prod.Data, "ahead", "*.tar.gz"))
		return len(m) == 1
	})
	if time.Now().After(opens) {
		t.Fatalf("the download ahead took until after the window opened (%s)", opens)
	}
	if v, err := prod.AppVersion(); err != nil || v != "1.0.0" {
		t.Fatalf("before the window: the app runs %q (%v), want 1.0.0 untouched", v, err)
	}
	prod.AwaitHealthy(t, "1.1.0")
	j := prod.AwaitJob(t)
	if j.Result != protocol.ResultSucceeded || len(j.Events) == 0 || j.Events[0].At.Before(opens) {
		t.Fatalf("job %s, first event %v, want succeeded and started at or after %s", j.Result, j.Events, opens)
	}
	t.Logf("window opened %s, first event %s", opens.Format(time.RFC3339), j.Events[0].At.Format(time.RFC3339Nano))

	// A freeze holds a job inside an open window; --now overrides it.
	env.MustCLI(t, "freeze", "create", "--client", "acme", "--from", time.Now().Add(-time.Minute).Format(time.RFC3339),
		"--to", time.Now().Add(time.Hour).Format(time.RFC3339), "--reason", "year-end closing")
	env.MustCLI(t, "upgrade", "--site", "acme-prod", "--to", "1.2.0")
	Await(t, "the held job's reason shown", func() bool { return strings.Contains(prod.Info(t).WaitReason, "year-end closing") })
	if j := prod.History(t)[0]; j.Result != protocol.ResultPending || len(j.Events) > 0 {
		t.Fatalf("frozen: job %s with events %v, want pending, untouched", j.Result, j.Events)
	}
	env.MustCLI(t, "upgrade", "--site", "acme-prod", "--to", "1.2.0", "--now", "--reason", "hotfix for ticket 42")
	prod.AwaitHealthy(t, "1.2.0")
}
