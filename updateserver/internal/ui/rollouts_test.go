package ui_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/store"
)

// TestRolloutsPauseResumeCancel: the rollouts page lists a rollout; a
// paused one stands out with its reason; support pauses, resumes and
// cancels it from its page (audited with the token's name); a viewer sees
// no form and its POST is refused; a form without the CSRF token is
// refused.
func TestRolloutsPauseResumeCancel(t *testing.T) {
	e := newEnv(t)
	e.enroll("acme-prod", "acme", protocol.CheckinRequest{InstalledVersion: "1.0.0"})
	e.enroll("acme-test", "acme", protocol.CheckinRequest{InstalledVersion: "1.0.0"})
	e.publish("1.1.0")
	ro, err := e.d.Fleet.CreateRollout(e.ctx, protocol.RolloutRequest{Product: "acme-erp", Version: "1.1.0", Clients: []string{"acme"}, Canary: []string{"acme-test"}}, "test")
	if err != nil {
		t.Fatal(err)
	}
	page := "/ui/rollouts/1"
	pauseForm, resumeForm, cancelForm := `action="/ui/rollouts/1/pause"`, `action="/ui/rollouts/1/resume"`, `action="/ui/rollouts/1/cancel"`

	v := e.browser()
	v.signIn(e.token("vera", protocol.RoleViewer))
	wantIn(t, v.page("/ui/rollouts"), `href="/ui/rollouts/1"`, "acme-erp 1.1.0", "running")
	body := v.page(page)
	wantIn(t, body, "Wave 0 (canary)", "acme-test", "Wave 1", "acme-prod")
	wantNotIn(t, body, pauseForm, cancelForm)
	if resp, body := v.post(page+"/pause", url.Values{"csrf": {v.csrf()}}); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "needs the") {
		t.Errorf("a viewer's pause: %s, want 403 naming the role it needs", resp.Status)
	}

	s := e.browser()
	s.signIn(e.token("alice", protocol.RoleSupport))
	wantIn(t, s.page(page), pauseForm, cancelForm)
	if resp, _ := s.post(page+"/pause", url.Values{}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("pause without the CSRF token: %s, want 403", resp.Status)
	}
	if ro, _ = e.d.Fleet.Rollout(e.ctx, ro.ID); ro.State != protocol.RolloutRunning {
		t.Fatalf("a refused pause changed the rollout: %s", ro.State)
	}
	resp, _ := s.post(page+"/pause", url.Values{"csrf": {s.csrf()}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != page {
		t.Fatalf("pause: %s to %q", resp.Status, resp.Header.Get("Location"))
	}
	body = s.page(page)
	wantIn(t, body, "Rollout 1 is paused.", "<b>PAUSED</b>", resumeForm, cancelForm)
	wantNotIn(t, body, pauseForm)
	wantIn(t, s.page("/ui/rollouts"), `<tr class="paused">`, "PAUSED")

	s.post(page+"/resume", url.Values{"csrf": {s.csrf()}})
	if ro, _ = e.d.Fleet.Rollout(e.ctx, ro.ID); ro.State != protocol.RolloutRunning {
		t.Fatalf("after resume the rollout is %s", ro.State)
	}
	s.post(page+"/cancel", url.Values{"csrf": {s.csrf()}})
	if ro, _ = e.d.Fleet.Rollout(e.ctx, ro.ID); ro.State != protocol.RolloutCancelled {
		t.Fatalf("after cancel the rollout is %s", ro.State)
	}
	body = s.page(page)
	wantIn(t, body, "Rollout 1 is cancelled.", "cancelled")
	wantNotIn(t, body, pauseForm, resumeForm, cancelForm)

	es, err := e.d.Store.AuditLog(e.ctx, store.AuditQuery{Actor: "alice", Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, a := range es {
		actions = append(actions, a.Action)
	}
	for _, want := range []string{"rollout.pause", "rollout.resume", "rollout.cancel"} {
		if !strings.Contains(strings.Join(actions, " "), want) {
			t.Errorf("alice's audit entries %v lack %s", actions, want)
		}
	}
}
