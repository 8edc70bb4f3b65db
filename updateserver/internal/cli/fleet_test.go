package cli_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/agentapi"
	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/daemon"
)

// simAgent speaks the agent protocol, as the real agent does.
type simAgent struct {
	*agentapi.Client
	site string
}

func (s *server) enroll(t *testing.T, token, site, client string) *simAgent {
	t.Helper()
	c := agentapi.New(s.URL)
	if _, err := c.Enroll(context.Background(), protocol.EnrollRequest{Token: token, Site: site, Client: client, Product: "acme-erp", Hostname: site + "-host"}); err != nil {
		t.Fatalf("enroll %s: %v", site, err)
	}
	return &simAgent{Client: c, site: site}
}

// idleOn enrolls site of client acme with a new support enroll token and
// checks it in idle on version: a site ready for an upgrade.
func (s *server) idleOn(t *testing.T, support, site, version string) *simAgent {
	t.Helper()
	tok := strings.TrimSpace(s.mustCLI(support, "enroll-token", "create", "--client", "acme"))
	a := s.enroll(t, tok, site, "acme")
	report := protocol.CheckinRequest{InstalledVersion: version, AgentVersion: "test", OS: "linux", Arch: "amd64", Hostname: "h", State: protocol.StateIdle}
	if _, err := a.Checkin(context.Background(), report, 0); err != nil {
		t.Fatal(err)
	}
	return a
}

// longPoll starts a check-in that waits up to wait for something new, and
// returns where its answer arrives.
func (a *simAgent) longPoll(t *testing.T, report protocol.CheckinRequest, wait time.Duration) <-chan protocol.CheckinResponse {
	got := make(chan protocol.CheckinResponse, 1)
	go func() {
		resp, err := a.Checkin(context.Background(), report, wait)
		if err != nil {
			t.Error(err)
		}
		got <- resp
	}()
	return got
}

func (s *server) publish(t *testing.T, version, upgradeFrom string) {
	t.Helper()
	dir := writeBundle(t, "", map[string]string{"files/VERSION": version})
	args := []string{"release", "publish", "--product", "acme-erp", "--version", version, dir}
	if upgradeFrom != "" {
		args = append(args, "--upgrade-from", upgradeFrom)
	}
	s.mustCLI(s.Admin, args...)
}

func (s *server) history(t *testing.T, token, site string) []protocol.Job {
	t.Helper()
	var jobs []protocol.Job
	if err := json.Unmarshal([]byte(s.mustCLI(token, "history", "--site", site, "--json")), &jobs); err != nil {
		t.Fatal(err)
	}
	return jobs
}

// TestEnrollment: an enroll token is exchanged for the agent's own
// credential, with its expiry, use count and client enforced.
func TestEnrollment(t *testing.T) {
	s := startServer(t)
	support := s.newToken(protocol.RoleSupport)
	tok := strings.TrimSpace(s.mustCLI(support, "enroll-token", "create", "--client", "acme", "--uses", "2"))
	a := s.enroll(t, tok, "acme-prod", "acme")
	if !strings.HasPrefix(a.Credential, protocol.AgentCredentialPrefix) {
		t.Errorf("credential %q", a.Credential)
	}
	ctx := context.Background()
	try := func(token, site, client string) error {
		_, err := agentapi.New(s.URL).Enroll(ctx, protocol.EnrollRequest{Token: token, Site: site, Client: client, Product: "acme-erp"})
		return err
	}
	if err := try(tok, "globex-prod", "globex"); err == nil || !strings.Contains(err.Error(), "another client") {
		t.Errorf("token of another client: %v", err)
	}
	s.enroll(t, tok, "acme-test", "acme") // second and last use
	if err := try(tok, "acme-dr", "acme"); err == nil || !strings.Contains(err.Error(), "used up") {
		t.Errorf("used-up token: %v", err)
	}
	expired := strings.TrimSpace(s.mustCLI(support, "enroll-token", "create", "--client", "acme", "--expires", "1ms"))
	time.Sleep(5 * time.Millisecond)
	if err := try(expired, "acme-dr", "acme"); err == nil || !strings.Contains(err.Error(), "expired") || !agentapi.IsUnauthorized(err) {
		t.Errorf("expired token: %v", err)
	}
	if err := try("dle_bogus", "acme-dr", "acme"); !agentapi.IsUnauthorized(err) {
		t.Errorf("bogus token: %v", err)
	}
	// A viewer may not hand out enroll tokens.
	if r := s.cli(s.newToken(protocol.RoleViewer), "enroll-token", "create", "--client", "acme"); r.code != 1 {
		t.Errorf("viewer creating an enroll token: exit %d", r.code)
	}
	// A bad credential is refused.
	bad := agentapi.New(s.URL)
	bad.Credential = "dla_forged"
	if _, err := bad.Checkin(ctx, protocol.CheckinRequest{State: "idle"}, 0); !agentapi.IsUnauthorized(err) {
		t.Errorf("forged credential: %v", err)
	}
}

// TestUpgradeFlow: support's upgrade reaches a long-polling agent, its
// events land once each, and the job ends as the agent reports.
func TestUpgradeFlow(t *testing.T) {
	s := startServer(t)
	support := s.newToken(protocol.RoleSupport)
	viewer := s.newToken(protocol.RoleViewer)
	s.publish(t, "1.0.0", "")
	s.publish(t, "1.1.0", ">= 1.0, < 1.1")
	tok := strings.TrimSpace(s.mustCLI(support, "enroll-token", "create", "--client", "acme", "--uses", "2"))
	a := s.enroll(t, tok, "acme-prod", "acme")
	b := s.enroll(t, tok, "acme-test", "acme")
	ctx := context.Background()
	report := protocol.CheckinRequest{InstalledVersion: "1.0.0", AgentVersion: "test", OS: "linux", Arch: "amd64", Hostname: "h", State: protocol.StateIdle}
	if _, err := b.Checkin(ctx, report, 0); err != nil {
		t.Fatal(err)
	}

	// The agent long-polls; support upgrades; the assignment arrives.
	got := a.longPoll(t, report, 60*time.Second)
	waitFor(t, func() bool { st := s.site(t, viewer, "acme-prod"); return st.LastSeen != nil })
	out := s.mustCLI(support, "upgrade", "--site", "acme-prod", "--to", "1.1.0", "--now")
	if !strings.Contains(out, "acme-prod: job-") {
		t.Errorf("upgrade said %q", out)
	}
	resp := <-got
	asg := resp.Assignment
	if asg == nil || asg.Version != "1.1.0" || asg.Target != "acme-erp/acme-erp-1.1.0.tar.gz" || asg.From != "1.0.0" {
		t.Fatalf("assignment = %+v", asg)
	}

	// Site B's agent cannot report on site A's job.
	if _, err := b.SendEvents(ctx, []protocol.Event{{JobID: asg.JobID, Seq: 1, State: "downloading", At: time.Now()}}); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("another site's agent sent events for the job: %v", err)
	}

	states := []string{"downloading", "verified", "preflight", "stopping", "staging", "switching", "starting", "health_check", "committed"}
	var events []protocol.Event
	for i, st := range states {
		events = append(events, protocol.Event{JobID: asg.JobID, Seq: int64(i + 1), State: st, At: time.Now()})
	}
	// Deliver the first half, then everything again (a retry after a lost
	// answer): each event is stored once.
	if r, err := a.SendEvents(ctx, events[:4]); err != nil || r.Accepted != 4 {
		t.Fatalf("first batch: %+v %v", r, err)
	}
	if r, err := a.SendEvents(ctx, events); err != nil || r.Accepted != 5 || r.Duplicate != 4 {
		t.Fatalf("second batch: %+v %v", r, err)
	}
	report.InstalledVersion = "1.1.0"
	report.Job = &protocol.JobStatus{ID: asg.JobID, From: "1.0.0", To: "1.1.0", State: "committed", Result: protocol.ResultSucceeded}
	if resp, err := a.Checkin(ctx, report, 0); err != nil || resp.Assignment != nil {
		t.Fatalf("after the job: %+v %v", resp, err)
	}

	jobs := s.history(t, viewer, "acme-prod")
	if len(jobs) != 1 || jobs[0].Result != protocol.ResultSucceeded || len(jobs[0].Events) != len(states) || jobs[0].From != "1.0.0" || jobs[0].To != "1.1.0" {
		t.Fatalf("history = %+v", jobs)
	}
	for i, e := range jobs[0].Events {
		if e.Seq != int64(i+1) || e.State != states[i] {
			t.Errorf("event %d = %+v", i, e)
		}
	}
	var sites []protocol.Site
	json.Unmarshal([]byte(s.mustCLI(viewer, "sites", "list", "--client", "acme", "--json")), &sites)
	if len(sites) != 2 || sites[0].Site != "acme-prod" || sites[0].InstalledVersion != "1.1.0" || sites[0].TargetVersion != "1.1.0" || sites[0].LastSeen == nil {
		t.Errorf("sites = %+v", sites)
	}
	if out := s.mustCLI(viewer, "sites", "show", "acme-prod"); !strings.Contains(out, "SUCCEEDED") || !strings.Contains(out, "health_check") {
		t.Errorf("sites show:\n%s", out)
	}

	// Refusals: unknown site, unpublished version, not admitted by
	// upgrade_from, a release role, a running job.
	for _, tt := range []struct {
		token string
		args  []string
		want  string
	}{
		{support, []string{"--site", "nowhere", "--to", "1.1.0"}, "not enrolled"},
		{support, []string{"--site", "acme-test", "--to", "9.9.9"}, "not published"},
		{s.newToken(protocol.RoleRelease), []string{"--site", "acme-test", "--to", "1.1.0"}, "release token may not"},
	} {
		if r := s.cli(tt.token, append([]string{"upgrade"}, tt.args...)...); r.code != 1 || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("upgrade %v: exit %d %q, want %q", tt.args, r.code, r.stderr, tt.want)
		}
	}
	s.publish(t, "3.0.0", ">= 2.5")
	if r := s.cli(support, "upgrade", "--site", "acme-test", "--to", "3.0.0"); r.code != 1 || !strings.Contains(r.stderr, "no upgrade path from 1.0.0") || !strings.Contains(r.stderr, ">= 2.5") {
		t.Errorf("no path: exit %d %q", r.code, r.stderr)
	}
	// A client-wide upgrade skips sites already there, and says so.
	out = s.mustCLI(support, "upgrade", "--client", "acme", "--to", "1.1.0")
	if strings.Contains(out, "acme-prod: job-") || !strings.Contains(out, "acme-prod: already on 1.1.0") || !strings.Contains(out, "acme-test: job-") {
		t.Errorf("client upgrade said %q", out)
	}
	bjob := s.history(t, viewer, "acme-test")[0]
	b.SendEvents(ctx, []protocol.Event{{JobID: bjob.ID, Seq: 1, State: "downloading", At: time.Now()}})
	if r := s.cli(support, "upgrade", "--site", "acme-test", "--to", "1.1.0"); r.code != 1 || !strings.Contains(r.stderr, "is running job "+bjob.ID+" (1.0.0 -> 1.1.0): wait for it to end\n") {
		t.Errorf("upgrade during a running job: exit %d %q", r.code, r.stderr)
	}
}

// TestJobTimesOut: a job without progress ends as failed, "timed out".
func TestJobTimesOut(t *testing.T) {
	s := startServer(t, func(c *daemon.Config) { c.JobTimeout = 300 * time.Millisecond })
	support := s.newToken(protocol.RoleSupport)
	s.publish(t, "1.0.0", "")
	tok := strings.TrimSpace(s.mustCLI(support, "enroll-token", "create", "--client", "acme"))
	s.enroll(t, tok, "acme-prod", "acme")
	s.mustCLI(support, "upgrade", "--site", "acme-prod", "--to", "1.0.0")
	waitFor(t, func() bool {
		j := s.history(t, support, "acme-prod")[0]
		return j.Result == protocol.ResultFailed && j.Reason == "timed out"
	})
}

func (s *server) site(t *testing.T, token, name string) protocol.Site {
	t.Helper()
	var st protocol.Site
	json.Unmarshal([]byte(s.mustCLI(token, "sites", "show", name, "--json")), &st)
	return st
}

// waitFor polls cond until it holds (a condition, not a timed assertion:
// the deadline only bounds a broken test).
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestMultiHopUpgrade: a target that does not admit the installed version
// is reached through the releases in between, one job per hop, in order;
// a hop that fails cancels the hops after it.
func TestMultiHopUpgrade(t *testing.T) {
	s := startServer(t)
	support := s.newToken(protocol.RoleSupport)
	s.publish(t, "1.0.0", "")
	s.publish(t, "1.5.0", ">= 1.0, < 1.5")
	s.publish(t, "1.6.0", ">= 1.5, < 1.6")
	s.publish(t, "2.0.0", ">= 1.6, < 2.0")
	s.mustCLI(s.Admin, "release", "yank", "--product", "acme-erp", "--version", "1.6.0", "--reason", "bad")
	tok := strings.TrimSpace(s.mustCLI(support, "enroll-token", "create", "--client", "acme"))
	a := s.enroll(t, tok, "acme-prod", "acme")
	ctx := context.Background()
	report := protocol.CheckinRequest{InstalledVersion: "1.0.0", State: protocol.StateIdle}
	a.Checkin(ctx, report, 0)

	// The only path runs through the yanked 1.6.0: refused.
	if r := s.cli(support, "upgrade", "--site", "acme-prod", "--to", "2.0.0"); r.code != 1 || !strings.Contains(r.stderr, "no upgrade path") {
		t.Fatalf("path through a yanked release: exit %d %q", r.code, r.stderr)
	}
	s.publish(t, "1.7.0", ">= 1.5, < 1.7")
	s.publish(t, "2.1.0", ">= 1.7, < 2.1")
	out := s.mustCLI(support, "upgrade", "--site", "acme-prod", "--to", "2.1.0", "--now")
	for _, hop := range []string{"1.0.0 -> 1.5.0", "1.5.0 -> 1.7.0", "1.7.0 -> 2.1.0"} {
		if !strings.Contains(out, hop) {
			t.Errorf("upgrade lacks hop %s:\n%s", hop, out)
		}
	}
	// The agent gets the hops one at a time, in order.
	for _, want := range []string{"1.5.0", "1.7.0"} {
		resp, err := a.Checkin(ctx, report, 0)
		if err != nil || resp.Assignment == nil || resp.Assignment.Version != want || resp.Assignment.From != report.InstalledVersion {
			t.Fatalf("assignment %+v %v, want %s from %s", resp.Assignment, err, want, report.InstalledVersion)
		}
		id := resp.Assignment.JobID
		if want == "1.7.0" {
			// This hop fails: the last one must not run.
			a.SendEvents(ctx, []protocol.Event{{JobID: id, Seq: 1, State: "downloading", At: time.Now()}, {JobID: id, Seq: 2, State: "rolling_back", Message: "health check failed", At: time.Now()}, {JobID: id, Seq: 3, State: "rolled_back", At: time.Now()}})
			break
		}
		a.SendEvents(ctx, []protocol.Event{{JobID: id, Seq: 1, State: "committed", At: time.Now()}})
		report.InstalledVersion = want
	}
	if resp, err := a.Checkin(ctx, report, 0); err != nil || resp.Assignment != nil {
		t.Fatalf("after a failed hop: %+v %v", resp.Assignment, err)
	}
	h := s.history(t, support, "acme-prod")
	if len(h) != 3 || h[0].Result != protocol.ResultFailed || !strings.Contains(h[0].Reason, "cancelled") ||
		h[1].Result != protocol.ResultRolledBack || h[2].Result != protocol.ResultSucceeded {
		t.Fatalf("history: %+v", h)
	}
	// Down is refused without --allow-downgrade.
	if r := s.cli(support, "upgrade", "--site", "acme-prod", "--to", "1.0.0"); r.code != 1 || !strings.Contains(r.stderr, "--allow-downgrade") {
		t.Errorf("downgrade: exit %d %q", r.code, r.stderr)
	}
	if r := s.cli(support, "upgrade", "--site", "acme-prod", "--to", "1.0.0", "--allow-downgrade"); r.code != 0 {
		t.Errorf("downgrade allowed: exit %d %q", r.code, r.stderr)
	}
}

// TestDriftBlocksUpgrade: a site reporting drift is shown so, and upgraded
// only with --accept-drift, which the assignment carries.
func TestDriftBlocksUpgrade(t *testing.T) {
	s := startServer(t)
	support := s.newToken(protocol.RoleSupport)
	s.publish(t, "1.0.0", "")
	s.publish(t, "1.1.0", "")
	tok := strings.TrimSpace(s.mustCLI(support, "enroll-token", "create", "--client", "acme"))
	a := s.enroll(t, tok, "acme-prod", "acme")
	ctx := context.Background()
	a.Checkin(ctx, protocol.CheckinRequest{InstalledVersion: "1.0.0", State: protocol.StateIdle, Drift: []string{"modified: bin/app.dll"}}, 0)
	if out := s.mustCLI(support, "sites", "list"); !strings.Contains(out, "(drift)") {
		t.Errorf("sites list does not show drift:\n%s", out)
	}
	if out := s.mustCLI(support, "sites", "show", "acme-prod"); !strings.Contains(out, "modified: bin/app.dll") {
		t.Errorf("sites show does not list the drift:\n%s", out)
	}
	if r := s.cli(support, "upgrade", "--site", "acme-prod", "--to", "1.1.0"); r.code != 1 || !strings.Contains(r.stderr, "--accept-drift") {
		t.Fatalf("upgrade of a drifted site: exit %d %q", r.code, r.stderr)
	}
	s.mustCLI(support, "upgrade", "--site", "acme-prod", "--to", "1.1.0", "--accept-drift")
	resp, err := a.Checkin(ctx, protocol.CheckinRequest{InstalledVersion: "1.0.0", State: protocol.StateIdle, Drift: []string{"modified: bin/app.dll"}}, 0)
	if err != nil || resp.Assignment == nil || !resp.Assignment.AcceptDrift {
		t.Fatalf("assignment does not carry accept_drift: %+v %v", resp.Assignment, err)
	}
	if code, body := s.api("GET", "/api/v1/audit", s.Admin, nil); code != 200 || !strings.Contains(string(body), "accept_drift=true") {
		t.Errorf("accept-drift not audited: %s", body)
	}
}

// TestReportedDriftDoesNotBlock: schema drift an agent only reports
// (schema_drift = "report") is shown, but the upgrade goes ahead without
// --accept-drift; with one blocking line besides, it does not.
func TestReportedDriftDoesNotBlock(t *testing.T) {
	s := startServer(t)
	support := s.newToken(protocol.RoleSupport)
	s.publish(t, "1.0.0", "")
	s.publish(t, "1.1.0", "")
	tok := strings.TrimSpace(s.mustCLI(support, "enroll-token", "create", "--client", "acme"))
	a := s.enroll(t, tok, "acme-prod", "acme")
	ctx := context.Background()
	reported := protocol.DriftReportedOnly + "added table audit_log"
	a.Checkin(ctx, protocol.CheckinRequest{InstalledVersion: "1.0.0", State: protocol.StateIdle, Drift: []string{reported, "schema: added index hotfix_idx"}}, 0)
	if r := s.cli(support, "upgrade", "--site", "acme-prod", "--to", "1.1.0"); r.code != 1 || !strings.Contains(r.stderr, "schema: added index hotfix_idx") {
		t.Fatalf("upgrade of a site with blocking schema drift: exit %d %q", r.code, r.stderr)
	}
	a.Checkin(ctx, protocol.CheckinRequest{InstalledVersion: "1.0.0", State: protocol.StateIdle, Drift: []string{reported}}, 0)
	if out := s.mustCLI(support, "sites", "show", "acme-prod"); !strings.Contains(out, reported) || !strings.Contains(out, "reported only, upgrades go ahead") {
		t.Errorf("sites show does not list the reported drift:\n%s", out)
	}
	s.mustCLI(support, "upgrade", "--site", "acme-prod", "--to", "1.1.0")
}

// TestReasonArrivesAfterCheckin: when the agent's check-in reports a job's
// end before its events arrive, the job still gets the reason from them.
func TestReasonArrivesAfterCheckin(t *testing.T) {
	s := startServer(t)
	support := s.newToken(protocol.RoleSupport)
	s.publish(t, "1.0.0", "")
	s.publish(t, "1.1.0", "")
	tok := strings.TrimSpace(s.mustCLI(support, "enroll-token", "create", "--client", "acme"))
	a := s.enroll(t, tok, "acme-prod", "acme")
	ctx := context.Background()
	a.Checkin(ctx, protocol.CheckinRequest{InstalledVersion: "1.0.0", State: protocol.StateIdle}, 0)
	s.mustCLI(support, "upgrade", "--site", "acme-prod", "--to", "1.1.0")
	id := s.history(t, support, "acme-prod")[0].ID
	a.Checkin(ctx, protocol.CheckinRequest{InstalledVersion: "1.0.0", State: protocol.StateIdle,
		Job: &protocol.JobStatus{ID: id, From: "1.0.0", To: "1.1.0", State: "rolled_back", Result: protocol.ResultRolledBack}}, 0)
	a.SendEvents(ctx, []protocol.Event{
		{JobID: id, Seq: 1, State: "rolling_back", Message: "health check failed: 503", At: time.Now()},
		{JobID: id, Seq: 2, State: "rolled_back", Message: "back on 1.0.0", At: time.Now()},
	})
	j := s.history(t, support, "acme-prod")[0]
	if j.Result != protocol.ResultRolledBack || !strings.Contains(j.Reason, "health check failed") {
		t.Fatalf("job = %s %q", j.Result, j.Reason)
	}
}
