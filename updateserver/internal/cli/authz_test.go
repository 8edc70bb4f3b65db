package cli_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
)

// TestAuthorization calls every operator and agent endpoint as every kind
// of caller and checks each answer against the policy below, the single
// statement of who may do what.
func TestAuthorization(t *testing.T) {
	s := startServer(t)
	s.publish(t, "1.0.0", "")
	support := s.newToken(protocol.RoleSupport)
	tok := strings.TrimSpace(s.mustCLI(support, "enroll-token", "create", "--client", "acme", "--uses", "2"))
	agentA := s.enroll(t, tok, "site-a", "acme")
	agentB := s.enroll(t, tok, "site-b", "acme") // tok is now used up
	expired := strings.TrimSpace(s.mustCLI(support, "enroll-token", "create", "--client", "acme", "--expires", "1ms"))
	time.Sleep(5 * time.Millisecond)
	fresh := func() string {
		return strings.TrimSpace(s.mustCLI(support, "enroll-token", "create", "--client", "acme"))
	}
	s.mustCLI(support, "upgrade", "--site", "site-b", "--to", "1.0.0")
	jobB := s.history(t, support, "site-b")[0].ID

	callers := map[string]string{
		"none":    "",
		"bad":     "dlo_not-a-token",
		"viewer":  s.newToken(protocol.RoleViewer),
		"support": support,
		"release": s.newToken(protocol.RoleRelease),
		"admin":   s.Admin,
		"agent-a": agentA.Credential,
		"agent-b": agentB.Credential,
	}
	order := []string{"none", "bad", "viewer", "support", "release", "admin", "agent-a", "agent-b"}

	// The policy: for each endpoint, who is allowed. Everyone else gets
	// 401 (no valid credential of the kind the endpoint takes) or 403 (a
	// valid one without the right).
	type endpoint struct {
		method, path, body string
		allowed            []string
	}
	operatorRoles := func(need string) []string {
		switch need {
		case protocol.RoleAdmin:
			return []string{"admin"}
		case protocol.RoleRelease:
			return []string{"release", "admin"}
		case protocol.RoleSupport:
			return []string{"support", "admin"}
		}
		return []string{"viewer", "support", "release", "admin"}
	}
	eps := []endpoint{
		{"POST", "/api/v1/tokens", `{"role":"viewer","name":"x"}`, operatorRoles(protocol.RoleAdmin)},
		{"GET", "/api/v1/audit", ``, operatorRoles(protocol.RoleAdmin)},
		{"POST", "/api/v1/uploads", `not a bundle`, operatorRoles(protocol.RoleRelease)},
		{"POST", "/api/v1/releases", `{"upload_id":"x"}`, operatorRoles(protocol.RoleRelease)},
		{"POST", "/api/v1/releases/acme-erp/1.0.0/promote", `{"channel":"beta"}`, operatorRoles(protocol.RoleRelease)},
		{"POST", "/api/v1/releases/acme-erp/1.0.0/yank", `{"reason":"authz test"}`, operatorRoles(protocol.RoleRelease)},
		{"GET", "/api/v1/repo/targets", ``, operatorRoles(protocol.RoleRelease)},
		{"GET", "/api/v1/releases", ``, operatorRoles(protocol.RoleViewer)},
		{"GET", "/api/v1/releases/acme-erp/1.0.0", ``, operatorRoles(protocol.RoleViewer)},
		{"POST", "/api/v1/enroll-tokens", `{"client":"acme"}`, operatorRoles(protocol.RoleSupport)},
		{"POST", "/api/v1/upgrades", `{"site":"site-a","to":"9.9.9"}`, operatorRoles(protocol.RoleSupport)},
		{"GET", "/api/v1/sites", ``, operatorRoles(protocol.RoleViewer)},
		{"GET", "/api/v1/sites/site-a", ``, operatorRoles(protocol.RoleViewer)},
		{"GET", "/api/v1/sites/site-a/history", ``, operatorRoles(protocol.RoleViewer)},
		{"POST", "/api/v1/agent/checkin", `{"state":"idle"}`, []string{"agent-a", "agent-b"}},
		// Site B's job: only site B's agent may report on it.
		{"POST", "/api/v1/agent/events", fmt.Sprintf(`{"events":[{"job_id":%q,"seq":1,"state":"downloading","at":"2026-01-01T00:00:00Z"}]}`, jobB), []string{"agent-b"}},
	}
	for _, ep := range eps {
		for _, who := range order {
			t.Run(ep.method+" "+ep.path+" as "+who, func(t *testing.T) {
				code, body := s.api(ep.method, ep.path, callers[who], strings.NewReader(ep.body))
				allowed := contains(ep.allowed, who)
				switch {
				case allowed && (code == http.StatusUnauthorized || code == http.StatusForbidden):
					t.Errorf("allowed caller refused: %d %s", code, body)
				case !allowed && code != http.StatusUnauthorized && code != http.StatusForbidden:
					t.Errorf("caller not in the policy got %d: %s", code, body)
				case !allowed && (who == "none" || who == "bad") && code != http.StatusUnauthorized:
					t.Errorf("no valid credential: %d, want 401", code)
				}
			})
		}
	}

	// Enrollment takes an enroll token, and only a live one.
	ctx := context.Background()
	for _, tt := range []struct {
		name, token string
		want        int
	}{
		{"no token", "", 401},
		{"operator token", s.Admin, 401},
		{"agent credential", agentA.Credential, 401},
		{"used-up enroll token", tok, 401},
		{"expired enroll token", expired, 401},
		{"live enroll token", fresh(), 201},
	} {
		body := fmt.Sprintf(`{"token":%q,"site":"site-c","client":"acme","product":"acme-erp"}`, tt.token)
		if code, b := s.api("POST", "/api/v1/agent/enroll", "", strings.NewReader(body)); code != tt.want {
			t.Errorf("enroll with %s: %d %s, want %d", tt.name, code, b, tt.want)
		}
	}
	// An agent reaches only its own site: its check-in updates its site
	// and no other, whatever it claims.
	agentA.Checkin(ctx, protocol.CheckinRequest{InstalledVersion: "6.6.6", State: "idle"}, 0)
	if v := s.site(t, support, "site-b").InstalledVersion; v == "6.6.6" {
		t.Error("agent A's check-in changed site B")
	}
	if v := s.site(t, support, "site-a").InstalledVersion; v != "6.6.6" {
		t.Errorf("agent A's check-in did not land on site A: %q", v)
	}
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}
