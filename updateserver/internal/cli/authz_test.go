package cli_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/agentapi"
	"github.com/dropless/dropless/pkg/airgap"
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
	// What the revoke endpoints act on, when the caller may.
	s.mustCLI(s.Admin, "token", "create", "--role", "viewer", "--name", "authz-victim")
	s.mustCLI(support, "enroll-token", "create", "--client", "acme")
	victimEnroll := s.newestEnrollToken(t, support).ID
	revoked := fresh()
	s.mustCLI(support, "enroll-token", "revoke", fmt.Sprint(s.newestEnrollToken(t, support).ID))

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
	// A report of an offline job of site A, signed by site A's agent.
	at := time.Now().UTC()
	offlineA, err := airgap.Sign(airgap.Report{Site: "site-a", Client: "acme", Product: "acme-erp", InstalledVersion: "1.0.0", WrittenAt: at,
		Jobs: []airgap.ReportJob{{ID: "offline-authz", To: "1.0.0", Target: "acme-erp/acme-erp-1.0.0.tar.gz", Result: protocol.ResultSucceeded,
			Events: []protocol.Event{{JobID: "offline-authz", Seq: 1, State: protocol.StateCommitted, At: at}}}}}, airgap.CredentialKey(agentA.Credential))
	if err != nil {
		t.Fatal(err)
	}
	eps := []endpoint{
		{"POST", "/api/v1/offline-reports", string(offlineA), operatorRoles(protocol.RoleSupport)},
		// Only site A's agent may send site A's report.
		{"POST", "/api/v1/agent/offline-report", string(offlineA), []string{"agent-a"}},
		{"POST", "/api/v1/tokens", `{"role":"viewer","name":"x"}`, operatorRoles(protocol.RoleAdmin)},
		{"GET", "/api/v1/tokens", ``, operatorRoles(protocol.RoleAdmin)},
		{"POST", "/api/v1/tokens/authz-victim/revoke", ``, operatorRoles(protocol.RoleAdmin)},
		{"GET", "/api/v1/audit", ``, operatorRoles(protocol.RoleAdmin)},
		{"GET", "/api/v1/audit?actor=admin&since=24h&limit=5&before=1000", ``, operatorRoles(protocol.RoleAdmin)},
		{"POST", "/api/v1/uploads", `not a bundle`, operatorRoles(protocol.RoleRelease)},
		{"POST", "/api/v1/releases", `{"upload_id":"x"}`, operatorRoles(protocol.RoleRelease)},
		{"POST", "/api/v1/releases/acme-erp/1.0.0/promote", `{"channel":"beta"}`, operatorRoles(protocol.RoleRelease)},
		{"POST", "/api/v1/releases/acme-erp/1.0.0/yank", `{"reason":"authz test"}`, operatorRoles(protocol.RoleRelease)},
		{"GET", "/api/v1/repo/targets", ``, operatorRoles(protocol.RoleRelease)},
		{"GET", "/api/v1/releases", ``, operatorRoles(protocol.RoleViewer)},
		{"GET", "/api/v1/releases/acme-erp/1.0.0", ``, operatorRoles(protocol.RoleViewer)},
		{"POST", "/api/v1/enroll-tokens", `{"client":"acme"}`, operatorRoles(protocol.RoleSupport)},
		{"GET", "/api/v1/enroll-tokens", ``, operatorRoles(protocol.RoleSupport)},
		{"POST", fmt.Sprintf("/api/v1/enroll-tokens/%d/revoke", victimEnroll), ``, operatorRoles(protocol.RoleSupport)},
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
				code, body := s.apiPatient(ep.method, ep.path, callers[who], ep.body)
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
		{"revoked enroll token", revoked, 401},
		{"token bound to another site", strings.TrimSpace(s.mustCLI(support, "enroll-token", "create", "--client", "acme", "--site", "site-d")), 401},
		{"live enroll token", fresh(), 201},
	} {
		body := fmt.Sprintf(`{"token":%q,"site":"site-c","client":"acme","product":"acme-erp"}`, tt.token)
		if code, b := s.apiPatient("POST", "/api/v1/agent/enroll", "", body); code != tt.want {
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

// apiPatient is api for a policy test that makes more failed
// authentications than the server's burst allows from one address: a 429
// is waited out (Retry-After) and the call made again.
func (s *server) apiPatient(method, path, token, body string) (int, []byte) {
	s.t.Helper()
	for range 30 {
		code, b := s.api(method, path, token, strings.NewReader(body))
		if code != http.StatusTooManyRequests {
			return code, b
		}
		time.Sleep(time.Second)
	}
	s.t.Fatalf("%s %s: still 429 after 30 tries", method, path)
	return 0, nil
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// TestRevokedAndExpiredTokensRefused: an operator token that was revoked,
// or has expired, is refused from the next request on, with a message
// that says which and what to do.
func TestRevokedAndExpiredTokensRefused(t *testing.T) {
	s := startServer(t)
	s.mustCLI(s.Admin, "token", "create", "--role", "viewer", "--name", "soon-gone")
	gone := strings.TrimSpace(s.mustCLI(s.Admin, "token", "create", "--role", "viewer", "--name", "laptop"))
	if code, b := s.api("GET", "/api/v1/sites", gone, nil); code != http.StatusOK {
		t.Fatalf("live token: %d %s", code, b)
	}
	s.mustCLI(s.Admin, "token", "revoke", "laptop")
	code, b := s.api("GET", "/api/v1/sites", gone, nil)
	if code != http.StatusUnauthorized || !strings.Contains(string(b), "revoked") {
		t.Errorf("revoked token, next request: %d %s, want 401 saying it was revoked", code, b)
	}

	expiring := strings.TrimSpace(s.mustCLI(s.Admin, "token", "create", "--role", "viewer", "--name", "temp", "--expires", "1ms"))
	waitFor(t, func() bool {
		code, _ := s.api("GET", "/api/v1/sites", expiring, nil)
		return code == http.StatusUnauthorized
	})
	r := s.cli(expiring, "sites", "list")
	if r.code != 1 || !strings.Contains(r.stderr, "expired") || !strings.Contains(r.stderr, "token create") {
		t.Errorf("expired token: exit %d, stderr %q: want 1 and a message that it expired and how to get a new one", r.code, r.stderr)
	}
	// A token that expires later works until then.
	later := strings.TrimSpace(s.mustCLI(s.Admin, "token", "create", "--role", "viewer", "--name", "later", "--expires", "720h"))
	if code, b := s.api("GET", "/api/v1/sites", later, nil); code != http.StatusOK {
		t.Errorf("token expiring in 30 days: %d %s", code, b)
	}
}

// TestEnrollTakeover: an enrolled site is enrolled again only with a
// --site S --replace token of its own client; every other token gets one
// and the same refusal, which names neither the site's client nor its
// product, and a refusal consumes no use.
func TestEnrollTakeover(t *testing.T) {
	s := startServer(t)
	support := s.newToken(protocol.RoleSupport)
	mint := func(client string, extra ...string) string {
		return strings.TrimSpace(s.mustCLI(support, append([]string{"enroll-token", "create", "--client", client}, extra...)...))
	}
	old := s.enroll(t, mint("acme"), "shop-1", "acme")
	ctx := context.Background()
	try := func(token, site, client string) (int, string) {
		body := fmt.Sprintf(`{"token":%q,"site":%q,"client":%q,"product":"acme-erp"}`, token, site, client)
		code, b := s.api("POST", "/api/v1/agent/enroll", "", strings.NewReader(body))
		return code, string(b)
	}

	plain := mint("acme")
	sameClient, sameBody := try(plain, "shop-1", "acme")
	otherClient, otherBody := try(mint("globex"), "shop-1", "globex")
	otherReplace, otherReplaceBody := try(mint("globex", "--site", "shop-1", "--replace"), "shop-1", "globex")
	boundNoReplace, boundBody := try(mint("acme", "--site", "shop-1"), "shop-1", "acme")
	for name, got := range map[string]int{"plain token of the same client": sameClient, "token of another client": otherClient,
		"replace token of another client": otherReplace, "site token without --replace": boundNoReplace} {
		if got != http.StatusConflict {
			t.Errorf("%s: %d, want 409", name, got)
		}
	}
	if sameBody != otherBody || sameBody != otherReplaceBody || sameBody != boundBody {
		t.Errorf("refusals differ by caller, so they tell who owns the site:\nsame client:     %s\nother client:    %s\nother, replace:  %s\nsite, no replace: %s",
			sameBody, otherBody, otherReplaceBody, boundBody)
	}
	if strings.Contains(sameBody, "acme") || !strings.Contains(sameBody, "--site shop-1 --replace") {
		t.Errorf("refusal %s: must name neither the site's client nor its product, and say which token works", sameBody)
	}
	if _, err := old.Checkin(ctx, protocol.CheckinRequest{State: "idle"}, 0); err != nil {
		t.Fatalf("a refused takeover cut off the site's agent: %v", err)
	}
	// The refused attempt consumed nothing: the one-use token still enrolls a new site.
	if code, b := try(plain, "shop-2", "acme"); code != http.StatusCreated {
		t.Errorf("one-use token after a refusal: %d %s, want 201", code, b)
	}
	// A token bound to a site enrolls no other.
	if code, b := try(mint("acme", "--site", "shop-1", "--replace"), "shop-3", "acme"); code != http.StatusUnauthorized || !strings.Contains(b, "shop-1 only") {
		t.Errorf("token for shop-1 enrolling shop-3: %d %s, want 401", code, b)
	}
	// A replace token claiming another product is refused; nothing changes.
	body := fmt.Sprintf(`{"token":%q,"site":"shop-1","client":"acme","product":"other-app"}`, mint("acme", "--site", "shop-1", "--replace"))
	if code, b := s.api("POST", "/api/v1/agent/enroll", "", strings.NewReader(body)); code != http.StatusConflict || !strings.Contains(string(b), "runs product acme-erp") {
		t.Errorf("replace token, other product: %d %s, want 409", code, b)
	}

	// The replace token of the site's client takes over; the old
	// credential is refused from then on.
	replacement := s.enroll(t, mint("acme", "--site", "shop-1", "--replace"), "shop-1", "acme")
	replaceID := s.newestEnrollToken(t, support).ID
	if _, err := old.Checkin(ctx, protocol.CheckinRequest{State: "idle"}, 0); !agentapi.IsUnauthorized(err) {
		t.Errorf("old credential after the takeover: %v, want 401", err)
	}
	if _, err := replacement.Checkin(ctx, protocol.CheckinRequest{State: "idle"}, 0); err != nil {
		t.Errorf("new credential: %v", err)
	}
	var audit []protocol.AuditEntry
	_, b := s.api("GET", "/api/v1/audit", s.Admin, nil)
	json.Unmarshal(b, &audit)
	found := false
	for _, e := range audit {
		if e.Action == "site.reenroll" && e.Object == "site shop-1" && strings.Contains(e.Detail, fmt.Sprintf("enroll_token=%d", replaceID)) {
			found = true
		}
	}
	if !found {
		t.Errorf("no site.reenroll audit entry naming enroll token %d: %+v", replaceID, audit)
	}
}
