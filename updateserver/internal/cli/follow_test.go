package cli_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
)

// publishOn publishes acme-erp's version on channel.
func (s *server) publishOn(t *testing.T, version, upgradeFrom, channel string) {
	t.Helper()
	dir := writeBundle(t, "", map[string]string{"files/VERSION": version})
	s.mustCLI(s.Admin, "release", "publish", "--product", "acme-erp", "--version", version, "--upgrade-from", upgradeFrom, "--channel", channel, dir)
}

func (s *server) sitesJSON(t *testing.T, token string) map[string]protocol.Site {
	t.Helper()
	var sites []protocol.Site
	if err := json.Unmarshal([]byte(s.mustCLI(token, "sites", "list", "--json")), &sites); err != nil {
		t.Fatal(err)
	}
	out := map[string]protocol.Site{}
	for _, st := range sites {
		out[st.Site] = st
	}
	return out
}

// openTo is the To of the site's newest job while it is pending or
// running ("" when none is open).
func (s *server) openTo(t *testing.T, token, site string) string {
	t.Helper()
	h := s.history(t, token, site)
	if len(h) == 0 || (h[0].Result != protocol.ResultPending && h[0].Result != protocol.ResultRunning) {
		return ""
	}
	return h[0].To
}

// TestSitesFollow: sites follow a channel, one pinned to its line; a
// publish and a promote onto the channel give each follower the newest
// release its pin admits, made by following (no one runs upgrade); a yank
// re-plans; sites list shows channel and pin; unfollow stops it; both are
// audited; bad input is a usage error.
func TestSitesFollow(t *testing.T) {
	s := startServer(t)
	support := s.newToken(protocol.RoleSupport)
	viewer := s.newToken(protocol.RoleViewer)
	s.publishOn(t, "1.0.0", "", "stable")
	tok := strings.TrimSpace(s.mustCLI(support, "enroll-token", "create", "--client", "acme", "--uses", "3"))
	ctx := context.Background()
	for _, name := range []string{"pinned", "free", "other"} {
		a := s.enroll(t, tok, name, "acme")
		a.Checkin(ctx, protocol.CheckinRequest{InstalledVersion: "1.0.0", AgentVersion: "0.9.0", State: protocol.StateIdle}, 0)
	}

	out := s.mustCLI(support, "sites", "follow", "--site", "pinned", "--channel", "stable", "--pin", "~> 1.0")
	if !strings.Contains(out, "pinned now follow channel stable (pin ~> 1.0)") {
		t.Errorf("follow said %q", out)
	}
	s.mustCLI(support, "sites", "follow", "--site", "free", "--channel", "stable")
	sites := s.sitesJSON(t, viewer)
	if st := sites["pinned"]; st.Channel != "stable" || st.Pin != "~> 1.0" {
		t.Errorf("pinned: channel %q pin %q", st.Channel, st.Pin)
	}
	if st := sites["other"]; st.Channel != "" || st.Pin != "" {
		t.Errorf("other: channel %q pin %q, want none", st.Channel, st.Pin)
	}
	if table := s.mustCLI(viewer, "sites", "list"); !strings.Contains(table, "stable ~> 1.0") {
		t.Errorf("sites list does not show the channel and pin:\n%s", table)
	}

	// A hot fix published on the channel: both followers get it.
	s.publishOn(t, "1.0.1", ">= 1.0.0, < 1.0.1", "stable")
	waitFor(t, func() bool { return s.openTo(t, viewer, "pinned") == "1.0.1" && s.openTo(t, viewer, "free") == "1.0.1" })
	if j := s.history(t, viewer, "pinned")[0]; j.CreatedBy != "follow:stable" || j.Result != protocol.ResultPending {
		t.Errorf("the job: created by %q, %s; want follow:stable, pending (for its window)", j.CreatedBy, j.Result)
	}
	if to := s.openTo(t, viewer, "other"); to != "" {
		t.Errorf("a site that follows nothing got a job to %s", to)
	}

	// 1.1.0 promoted from beta onto stable: the unpinned site moves on to
	// it; the pin keeps the other on 1.0.
	s.publishOn(t, "1.1.0", ">= 1.0.0, < 1.1.0", "beta")
	s.mustCLI(s.Admin, "release", "promote", "--product", "acme-erp", "--version", "1.1.0", "--channel", "stable")
	waitFor(t, func() bool { return s.openTo(t, viewer, "free") == "1.1.0" })
	if to := s.openTo(t, viewer, "pinned"); to != "1.0.1" {
		t.Errorf("pinned ~> 1.0 has a job to %s, want 1.0.1", to)
	}

	// Yanking the release free waits for re-plans it to the newest left.
	s.mustCLI(s.Admin, "release", "yank", "--product", "acme-erp", "--version", "1.1.0", "--reason", "broken")
	waitFor(t, func() bool { return s.openTo(t, viewer, "free") == "1.0.1" })
	if j := s.history(t, viewer, "free")[1]; j.To != "1.1.0" || j.Result != protocol.ResultFailed || !strings.Contains(j.Reason, "superseded") {
		t.Errorf("the job to the yanked release: to %s %s %q, want cancelled", j.To, j.Result, j.Reason)
	}

	// Unfollow: the channel is gone, following's pending job cancelled.
	if out := s.mustCLI(support, "sites", "unfollow", "--site", "free"); !strings.Contains(out, "free follow no channel") {
		t.Errorf("unfollow said %q", out)
	}
	if st := s.sitesJSON(t, viewer)["free"]; st.Channel != "" || s.openTo(t, viewer, "free") != "" {
		t.Errorf("after unfollow: channel %q, open job to %q", st.Channel, s.openTo(t, viewer, "free"))
	}
	audit := s.mustCLI(s.Admin, "audit", "list", "--json")
	for _, want := range []string{`"sites.follow"`, `"sites.unfollow"`, `"follow.upgrade"`, `pin=`} {
		if !strings.Contains(audit, want) {
			t.Errorf("audit lacks %s", want)
		}
	}

	// A client's sites at once.
	if out := s.mustCLI(support, "sites", "follow", "--client", "acme", "--channel", "beta"); !strings.Contains(out, "free, other, pinned now follow channel beta") {
		t.Errorf("follow --client said %q", out)
	}
	for name, st := range s.sitesJSON(t, viewer) {
		if st.Channel != "beta" || st.Pin != "" {
			t.Errorf("%s after follow --client: channel %q pin %q, want beta and no pin", name, st.Channel, st.Pin)
		}
	}
	s.mustCLI(support, "sites", "unfollow", "--client", "acme")
	for name, st := range s.sitesJSON(t, viewer) {
		if st.Channel != "" {
			t.Errorf("%s after unfollow --client: channel %q", name, st.Channel)
		}
	}

	for _, tt := range []struct {
		token string
		args  []string
		code  int
		want  string
	}{
		{support, []string{"--site", "free"}, 2, "--channel"},
		{support, []string{"--site", "free", "--client", "acme", "--channel", "stable"}, 2, "exactly one"},
		{support, []string{"--site", "free", "--channel", "stable", "--pin", "about 1"}, 2, "~> 3.2"},
		{support, []string{"--site", "nowhere", "--channel", "stable"}, 1, "not enrolled"},
		{viewer, []string{"--site", "free", "--channel", "stable"}, 1, "viewer token may not"},
	} {
		if r := s.cli(tt.token, append([]string{"sites", "follow"}, tt.args...)...); r.code != tt.code || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("sites follow %v: exit %d %q, want %d and %q", tt.args, r.code, r.stderr, tt.code, tt.want)
		}
	}
}

// TestSupportView: sites list tells an upgrading site (with its step), a
// pending one and a rolled-back one apart, flags offline sites, shows the
// agent version and the last result; history shows each job's downtime.
func TestSupportView(t *testing.T) {
	s := startServer(t)
	support := s.newToken(protocol.RoleSupport)
	viewer := s.newToken(protocol.RoleViewer)
	s.publish(t, "1.0.0", "")
	s.publish(t, "1.1.0", "")
	tok := strings.TrimSpace(s.mustCLI(support, "enroll-token", "create", "--client", "acme", "--uses", "4"))
	ctx := context.Background()
	report := protocol.CheckinRequest{InstalledVersion: "1.0.0", AgentVersion: "0.9.0", State: protocol.StateIdle}
	agents := map[string]*simAgent{}
	for _, name := range []string{"ok", "bad", "waits"} {
		agents[name] = s.enroll(t, tok, name, "acme")
		agents[name].Checkin(ctx, report, 0)
	}
	s.enroll(t, tok, "away", "acme") // never checks in
	for _, name := range []string{"ok", "bad", "waits"} {
		s.mustCLI(support, "upgrade", "--site", name, "--to", "1.1.0")
	}
	t0 := time.Now().Add(-time.Minute)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	job := func(name string) string {
		resp, err := agents[name].Checkin(ctx, report, 0)
		if err != nil || resp.Assignment == nil {
			t.Fatalf("%s: no assignment: %v", name, err)
		}
		return resp.Assignment.JobID
	}
	okJob, badJob := job("ok"), job("bad")
	agents["ok"].SendEvents(ctx, []protocol.Event{{JobID: okJob, Seq: 1, State: "downloading", At: at(0)}, {JobID: okJob, Seq: 2, State: "stopping", At: at(1000)}})
	agents["bad"].SendEvents(ctx, []protocol.Event{{JobID: badJob, Seq: 1, State: "stopping", At: at(0)},
		{JobID: badJob, Seq: 2, State: "rolling_back", Message: "health check failed: 503", At: at(4000)}, {JobID: badJob, Seq: 3, State: "rolled_back", At: at(6500)}})

	sites := s.sitesJSON(t, viewer)
	for name, want := range map[string]struct{ state, step, last string }{
		"ok":    {protocol.SiteUpgrading, "stopping", ""},
		"bad":   {protocol.StateIdle, "", protocol.ResultRolledBack},
		"waits": {protocol.SitePending, "", ""},
	} {
		if st := sites[name]; st.State != want.state || st.Step != want.step || st.LastResult != want.last || !st.Online || st.AgentVersion != "0.9.0" {
			t.Errorf("%s: state %q step %q last_result %q online %t agent %q; want %q %q %q, online, agent 0.9.0",
				name, st.State, st.Step, st.LastResult, st.Online, st.AgentVersion, want.state, want.step, want.last)
		}
	}
	if st := sites["away"]; st.Online {
		t.Errorf("a site that never checked in is online")
	}
	table := s.mustCLI(viewer, "sites", "list")
	for _, want := range []string{"upgrading (stopping)", "rolled_back", "pending", "never (offline)", "0.9.0"} {
		if !strings.Contains(table, want) {
			t.Errorf("sites list lacks %q:\n%s", want, table)
		}
	}
	// The raw JSON has every field the contract names, even when empty.
	code, body := s.api("GET", "/api/v1/sites?client=acme", viewer, nil)
	for _, field := range []string{`"online"`, `"last_result"`, `"agent_version"`, `"channel"`, `"pin"`, `"window_open"`, `"next_window"`} {
		if code != 200 || !strings.Contains(string(body), field) {
			t.Errorf("GET /sites lacks %s: %d %s", field, code, body)
		}
	}

	agents["ok"].SendEvents(ctx, []protocol.Event{{JobID: okJob, Seq: 3, State: "starting", At: at(2000)},
		{JobID: okJob, Seq: 4, State: "health_check", At: at(2500)}, {JobID: okJob, Seq: 5, State: "committed", At: at(3250)}})
	for name, want := range map[string]int64{"ok": 2250, "bad": 6500} {
		j := s.history(t, viewer, name)[0]
		if j.DowntimeMS == nil || *j.DowntimeMS != want {
			t.Errorf("%s: downtime_ms %v, want %d", name, j.DowntimeMS, want)
		}
	}
	if j := s.history(t, viewer, "waits")[0]; j.DowntimeMS != nil {
		t.Errorf("a pending job has downtime_ms %d", *j.DowntimeMS)
	}
	if out := s.mustCLI(viewer, "history", "--site", "ok"); !strings.Contains(out, "app down 2.25s") {
		t.Errorf("history does not show the downtime:\n%s", out)
	}
	if st := s.site(t, viewer, "ok"); st.State != protocol.StateIdle || st.LastResult != protocol.ResultSucceeded || st.LastJob == nil || st.LastJob.DowntimeMS == nil {
		t.Errorf("sites show ok after the job: state %q last_result %q last job %+v", st.State, st.LastResult, st.LastJob)
	}
}
