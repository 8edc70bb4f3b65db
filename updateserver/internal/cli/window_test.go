package cli_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
)

// weeklyRange is a window range in loc from start for d, written as
// window set takes it ("Mon 22:00-Tue 01:00").
func weeklyRange(start time.Time, d time.Duration, loc *time.Location) string {
	a, b := start.In(loc), start.Add(d).In(loc)
	return fmt.Sprintf("%s %02d:%02d-%s %02d:%02d", a.Weekday().String()[:3], a.Hour(), a.Minute(), b.Weekday().String()[:3], b.Hour(), b.Minute())
}

// TestWindowHoldsJob: a job for a site whose window is closed is not
// handed to the agent's check-in (Window.Open false, with the opening),
// sites list says when it opens; the window opening lets it start; a
// freeze holds it with its reason; --now overrides both, audited with
// its reason.
func TestWindowHoldsJob(t *testing.T) {
	s := startServer(t)
	support := s.newToken(protocol.RoleSupport)
	viewer := s.newToken(protocol.RoleViewer)
	s.publish(t, "1.0.0", "")
	s.publish(t, "1.1.0", "")
	tok := strings.TrimSpace(s.mustCLI(support, "enroll-token", "create", "--client", "acme", "--uses", "3"))
	prod := s.enroll(t, tok, "acme-prod", "acme")
	test := s.enroll(t, tok, "acme-test", "acme")
	dr := s.enroll(t, tok, "acme-dr", "acme")
	ctx := context.Background()
	report := protocol.CheckinRequest{InstalledVersion: "1.0.0", AgentVersion: "test", OS: "linux", Arch: "amd64", Hostname: "h", State: protocol.StateIdle}

	tokyo, _ := time.LoadLocation("Asia/Tokyo")
	opens := time.Now().Add(49 * time.Hour).Truncate(time.Minute)
	closed := weeklyRange(opens, 2*time.Hour, tokyo)
	s.mustCLI(support, "window", "set", "--client", "acme", "--weekly", closed, "--tz", "Asia/Tokyo")

	s.mustCLI(support, "upgrade", "--site", "acme-prod", "--to", "1.1.0")
	resp, err := prod.Checkin(ctx, report, 0)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Window.Open || resp.Window.NextOpen == nil || !resp.Window.NextOpen.Equal(opens) {
		t.Fatalf("closed window: check-in says %+v, want closed until %s", resp.Window, opens.UTC())
	}
	if st := s.site(t, viewer, "acme-prod"); st.WindowOpen || st.NextWindow != opens.UTC().Format(time.RFC3339) || !strings.HasPrefix(st.WaitReason, "waiting for window, opens") {
		t.Fatalf("sites show: window_open %t next_window %q reason %q, want closed until %s", st.WindowOpen, st.NextWindow, st.WaitReason, opens.UTC())
	}
	if out := s.mustCLI(viewer, "sites", "list"); !strings.Contains(out, "opens "+opens.Local().Format("2006-01-02 15:04")) {
		t.Fatalf("sites list does not say when the window opens:\n%s", out)
	}
	show := s.mustCLI(viewer, "window", "show", "--site", "acme-prod")
	for _, want := range []string{closed, "Asia/Tokyo", "closed", opens.In(tokyo).Format("Mon 2006-01-02 15:04 JST"), opens.UTC().Format(time.RFC3339) + " (UTC)"} {
		if !strings.Contains(show, want) {
			t.Errorf("window show lacks %q:\n%s", want, show)
		}
	}
	// Still not handed out: support may still supersede the pending job.
	if j := s.history(t, viewer, "acme-prod")[0]; j.Result != protocol.ResultPending {
		t.Fatalf("job %s, want pending", j.Result)
	}

	// The site's own window, open now, wins over the client's.
	s.mustCLI(support, "window", "set", "--site", "acme-prod", "--weekly", weeklyRange(time.Now().Add(-time.Hour), 3*time.Hour, time.UTC))
	resp, err = prod.Checkin(ctx, report, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !resp.Window.Open || resp.Assignment == nil || resp.Assignment.Version != "1.1.0" {
		t.Fatalf("open window: check-in %+v, want the job with the window open", resp)
	}
	if st := s.site(t, viewer, "acme-prod"); !st.WindowOpen || st.NextWindow == "" {
		t.Fatalf("open window: window_open %t next_window %q, want open and the next opening", st.WindowOpen, st.NextWindow)
	}

	// A freeze holds a site whose window is open, with its reason.
	s.mustCLI(support, "window", "set", "--site", "acme-test", "--weekly", weeklyRange(time.Now().Add(-time.Hour), 3*time.Hour, time.UTC))
	until := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	id := strings.TrimSpace(s.mustCLI(support, "freeze", "create", "--client", "acme", "--from", time.Now().Add(-time.Minute).Format(time.RFC3339),
		"--to", until.Format(time.RFC3339), "--reason", "year-end closing"))
	s.mustCLI(support, "upgrade", "--site", "acme-test", "--to", "1.1.0")
	resp, err = test.Checkin(ctx, report, 0)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Window.Open {
		t.Fatalf("frozen: check-in says the window is open: %+v", resp.Window)
	}
	if st := s.site(t, viewer, "acme-test"); st.WindowOpen || !strings.Contains(st.WaitReason, "year-end closing") {
		t.Fatalf("frozen: window_open %t reason %q, want the freeze's reason", st.WindowOpen, st.WaitReason)
	}
	if out := s.mustCLI(viewer, "sites", "list"); !strings.Contains(out, "year-end closing") {
		t.Fatalf("sites list does not show the freeze's reason:\n%s", out)
	}
	var freezes []protocol.Freeze
	json.Unmarshal([]byte(s.mustCLI(viewer, "freeze", "list", "--json")), &freezes)
	if len(freezes) != 1 || fmt.Sprint(freezes[0].ID) != id || freezes[0].Client != "acme" || !freezes[0].To.Equal(until) {
		t.Fatalf("freeze list = %+v, want freeze %s of acme until %s", freezes, id, until)
	}

	// --now overrides the closed window and the freeze; the reason is audited.
	s.mustCLI(support, "upgrade", "--site", "acme-dr", "--to", "1.1.0", "--now", "--reason", "hotfix for ticket 42")
	resp, err = dr.Checkin(ctx, report, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !resp.Window.Open || resp.Assignment == nil {
		t.Fatalf("--now: check-in %+v, want the job with the window open", resp)
	}
	if audit := s.mustCLI(s.Admin, "audit", "list"); !strings.Contains(audit, `hotfix for ticket 42`) {
		t.Fatalf("the audit log lacks --now's reason:\n%s", audit)
	}

	// The freeze deleted, the held job may start.
	s.mustCLI(support, "freeze", "delete", id)
	resp, err = test.Checkin(ctx, report, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !resp.Window.Open || resp.Assignment == nil {
		t.Fatalf("freeze deleted: check-in %+v, want the job with the window open", resp)
	}
	if r := s.cli(support, "freeze", "delete", id); r.code != 1 || !strings.Contains(r.stderr, "no freeze has ID") {
		t.Errorf("deleting a deleted freeze: exit %d %q", r.code, r.stderr)
	}
}

// TestWindowLongPollWakesAtOpening: an agent long-polling while its
// window is closed gets its job when the window opens, not before.
func TestWindowLongPollWakesAtOpening(t *testing.T) {
	t.Parallel() // waits up to a minute for the opening
	s := startServer(t)
	support := s.newToken(protocol.RoleSupport)
	s.publish(t, "1.0.0", "")
	s.publish(t, "1.1.0", "")
	tok := strings.TrimSpace(s.mustCLI(support, "enroll-token", "create", "--client", "acme"))
	a := s.enroll(t, tok, "acme-prod", "acme")
	report := protocol.CheckinRequest{InstalledVersion: "1.0.0", State: protocol.StateIdle}
	// Minutes are the ranges' grain: the window opens at the next minute.
	opens := time.Now().Truncate(time.Minute).Add(time.Minute)
	if time.Until(opens) < 5*time.Second {
		opens = opens.Add(time.Minute)
	}
	// The agent long-polls from before the window is set: the job that
	// wakes it must still wait for the opening.
	got := a.longPoll(t, report, 5*time.Minute)
	waitFor(t, func() bool { return s.site(t, support, "acme-prod").LastSeen != nil })
	ny, _ := time.LoadLocation("America/New_York")
	s.mustCLI(support, "window", "set", "--site", "acme-prod", "--weekly", weeklyRange(opens, time.Hour, ny), "--tz", "America/New_York")
	s.mustCLI(support, "upgrade", "--site", "acme-prod", "--to", "1.1.0")
	resp := <-got
	if got := time.Now(); got.Before(opens) || !resp.Window.Open || resp.Assignment == nil {
		t.Fatalf("long poll answered at %s with %+v, want the job once the window opens at %s", got, resp, opens)
	}
}

// TestAuthorizationWindows extends TestAuthorization's policy to windows
// and freezes (on a server of its own: the failed authentications of one
// table would pass the per-address limit): support changes them, a viewer
// reads them, an agent does neither.
func TestAuthorizationWindows(t *testing.T) {
	s := startServer(t)
	support := s.newToken(protocol.RoleSupport)
	tok := strings.TrimSpace(s.mustCLI(support, "enroll-token", "create", "--client", "acme"))
	agent := s.enroll(t, tok, "site-a", "acme")
	callers := map[string]string{
		"none": "", "bad": "dlo_not-a-token", "viewer": s.newToken(protocol.RoleViewer), "support": support,
		"release": s.newToken(protocol.RoleRelease), "admin": s.Admin, "agent": agent.Credential,
	}
	readers := []string{"viewer", "support", "release", "admin"}
	writers := []string{"support", "admin"}
	eps := []struct {
		method, path, body string
		allowed            []string
	}{
		{"GET", "/api/v1/sites/site-a/window", ``, readers},
		{"PUT", "/api/v1/windows", `{"site":"site-a","weekly":["Sat 22:00-Sun 04:00"],"tz":"Europe/Berlin"}`, writers},
		{"DELETE", "/api/v1/windows?client=acme", ``, writers},
		{"POST", "/api/v1/freezes", `{"from":"2030-01-01T00:00:00Z","to":"2030-01-02T00:00:00Z","reason":"authz test"}`, writers},
		{"GET", "/api/v1/freezes", ``, readers},
		{"DELETE", "/api/v1/freezes/999999", ``, writers},
	}
	for _, ep := range eps {
		for who, cred := range callers {
			code, body := s.api(ep.method, ep.path, cred, strings.NewReader(ep.body))
			allowed := contains(ep.allowed, who)
			switch {
			case allowed && (code == 401 || code == 403):
				t.Errorf("%s %s as %s: allowed caller refused: %d %s", ep.method, ep.path, who, code, body)
			case !allowed && code != 401 && code != 403:
				t.Errorf("%s %s as %s: caller not in the policy got %d: %s", ep.method, ep.path, who, code, body)
			case !allowed && (who == "none" || who == "bad") && code != 401:
				t.Errorf("%s %s as %s: no valid credential: %d, want 401", ep.method, ep.path, who, code)
			}
		}
	}
}
