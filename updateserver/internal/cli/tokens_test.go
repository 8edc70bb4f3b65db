package cli_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	_ "modernc.org/sqlite"

	"github.com/dropless/dropless/pkg/agentapi"
	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/store"
)

func (s *server) enrollTokens(t *testing.T, token string) []protocol.EnrollTokenInfo {
	t.Helper()
	var out []protocol.EnrollTokenInfo
	if err := json.Unmarshal([]byte(s.mustCLI(token, "enroll-token", "list", "--json")), &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func (s *server) newestEnrollToken(t *testing.T, token string) protocol.EnrollTokenInfo {
	t.Helper()
	all := s.enrollTokens(t, token)
	if len(all) == 0 {
		t.Fatal("no enroll tokens")
	}
	return all[len(all)-1]
}

func (s *server) tokenList(t *testing.T) []protocol.TokenInfo {
	t.Helper()
	var out []protocol.TokenInfo
	if err := json.Unmarshal([]byte(s.mustCLI(s.Admin, "token", "list", "--json")), &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func tokenNamed(t *testing.T, all []protocol.TokenInfo, name string) protocol.TokenInfo {
	t.Helper()
	for _, tk := range all {
		if tk.Name == name {
			return tk
		}
	}
	t.Fatalf("no token %s in %+v", name, all)
	return protocol.TokenInfo{}
}

// TestTokenCommands: token create, list and revoke as an admin uses them:
// unique live names, what the list shows (and never shows), revocation by
// name, the last admin kept, exit codes, and the audit trail.
func TestTokenCommands(t *testing.T) {
	s := startServer(t)
	ci := strings.TrimSpace(s.mustCLI(s.Admin, "token", "create", "--role", "release", "--name", "ci", "--expires", "720h"))
	if r := s.cli(s.Admin, "token", "create", "--role", "viewer", "--name", "ci"); r.code != 1 || !strings.Contains(r.stderr, "already named") {
		t.Errorf("duplicate live name: exit %d %q, want 1 and a clear refusal", r.code, r.stderr)
	}
	s.mustCLI(ci, "release", "list") // ci is used once

	all := s.tokenList(t)
	got := tokenNamed(t, all, "ci")
	if got.Role != "release" || got.ExpiresAt == nil || got.LastUsedAt == nil || got.RevokedAt != nil || !strings.Contains(got.CreatedBy, "admin") {
		t.Errorf("ci in token list --json: %+v", got)
	}
	if a := tokenNamed(t, all, "admin"); a.ExpiresAt != nil || a.LastUsedAt == nil {
		t.Errorf("admin in token list --json: %+v", a)
	}
	rawJSON := s.mustCLI(s.Admin, "token", "list", "--json")
	table := s.mustCLI(s.Admin, "token", "list")
	for _, out := range []string{rawJSON, table} {
		for _, secret := range []string{ci, s.Admin, store.HashSecret(ci), store.HashSecret(s.Admin)} {
			if strings.Contains(out, secret) {
				t.Errorf("token list shows a secret or its hash:\n%s", out)
			}
		}
	}
	for _, col := range []string{"NAME", "ROLE", "CREATED", "CREATED BY", "LAST USED", "EXPIRES", "REVOKED"} {
		if !strings.Contains(table, col) {
			t.Errorf("token list has no %s column:\n%s", col, table)
		}
	}

	// Revoke by name: refused at once, shown as revoked, the name free again.
	if out := s.mustCLI(s.Admin, "token", "revoke", "ci"); !strings.Contains(out, "revoked token ci") {
		t.Errorf("revoke output %q", out)
	}
	if r := s.cli(ci, "release", "list"); r.code != 1 || !strings.Contains(r.stderr, "revoked") {
		t.Errorf("revoked token: exit %d %q", r.code, r.stderr)
	}
	if tokenNamed(t, s.tokenList(t), "ci").RevokedAt == nil {
		t.Error("token list does not show ci as revoked")
	}
	if r := s.cli(s.Admin, "token", "revoke", "ci"); r.code != 1 || !strings.Contains(r.stderr, "no live token") {
		t.Errorf("revoking a revoked token: exit %d %q", r.code, r.stderr)
	}
	s.mustCLI(s.Admin, "token", "create", "--role", "release", "--name", "ci")

	// Names given twice before they were unique: revoke takes them all and says so.
	db := s.rawDB(t)
	if _, err := db.Exec(`INSERT INTO tokens (name, role, hash, created_at, created_by) VALUES
		('legacy', 'viewer', 'h1', '2024-01-01T00:00:00Z', 'old server'), ('legacy', 'viewer', 'h2', '2024-01-01T00:00:00Z', 'old server')`); err != nil {
		t.Fatal(err)
	}
	if out := s.mustCLI(s.Admin, "token", "revoke", "legacy"); !strings.Contains(out, "revoked 2 tokens named legacy") {
		t.Errorf("revoking legacy duplicates: %q", out)
	}

	// The last live admin token stays.
	if r := s.cli(s.Admin, "token", "revoke", "admin"); r.code != 1 || !strings.Contains(r.stderr, "create another admin token first") {
		t.Errorf("revoking the last admin: exit %d %q", r.code, r.stderr)
	}
	admin2 := strings.TrimSpace(s.mustCLI(s.Admin, "token", "create", "--role", "admin", "--name", "admin-2"))
	s.mustCLI(admin2, "token", "revoke", "admin")
	if r := s.cli(s.Admin, "token", "list"); r.code != 1 {
		t.Errorf("the revoked first admin token still works: exit %d", r.code)
	}

	// Usage errors and roles.
	for _, args := range [][]string{
		{"token", "revoke"},
		{"token", "revoke", "a", "b"},
		{"token", "create", "--role", "viewer", "--name", "x", "--expires", "-1h"},
		{"token", "create", "--role", "viewer", "--name", "x", "--expires", "soon"},
	} {
		if r := s.cli(admin2, args...); r.code != 2 {
			t.Errorf("updateserver %s: exit %d, want 2 (usage)", strings.Join(args, " "), r.code)
		}
	}
	viewer := strings.TrimSpace(s.mustCLI(admin2, "token", "create", "--role", "viewer", "--name", "v"))
	if r := s.cli(viewer, "token", "list"); r.code != 1 || !strings.Contains(r.stderr, "needs the admin role") || strings.Contains(r.stderr, "(or admin)") {
		t.Errorf("viewer listing tokens: exit %d %q", r.code, r.stderr)
	}

	var audit []protocol.AuditEntry
	_, b := s.api("GET", "/api/v1/audit", admin2, nil)
	json.Unmarshal(b, &audit)
	var actions []string
	for _, e := range audit {
		actions = append(actions, e.Action+" "+e.Detail)
	}
	joined := strings.Join(actions, "\n")
	for _, want := range []string{"token.create name=ci role=release expires=2", "token.revoke name=ci", "token.revoke name=legacy", "token.revoke name=admin role=admin"} {
		if !strings.Contains(joined, want) {
			t.Errorf("audit log lacks %q:\n%s", want, joined)
		}
	}
}

// TestEnrollTokenCommands: enroll-token create, list and revoke: what the
// list shows (never the secret), revocation stops enrollment, exit codes.
func TestEnrollTokenCommands(t *testing.T) {
	s := startServer(t)
	support := s.newToken(protocol.RoleSupport)
	plain := strings.TrimSpace(s.mustCLI(support, "enroll-token", "create", "--client", "acme", "--uses", "3"))
	bound := strings.TrimSpace(s.mustCLI(support, "enroll-token", "create", "--client", "acme", "--site", "acme-prod", "--replace"))

	list := s.enrollTokens(t, support)
	if len(list) != 2 {
		t.Fatalf("enroll-token list --json: %+v", list)
	}
	if p := list[0]; p.Client != "acme" || p.Site != "" || p.Replace || p.UsesLeft != 3 || p.RevokedAt != nil || p.CreatedBy == "" {
		t.Errorf("plain token listed as %+v", p)
	}
	if b := list[1]; b.Site != "acme-prod" || !b.Replace || b.UsesLeft != 1 {
		t.Errorf("site token listed as %+v", b)
	}
	rawJSON := s.mustCLI(support, "enroll-token", "list", "--json")
	table := s.mustCLI(support, "enroll-token", "list")
	for _, out := range []string{rawJSON, table} {
		for _, secret := range []string{plain, bound, store.HashSecret(plain)} {
			if strings.Contains(out, secret) {
				t.Errorf("enroll-token list shows a secret or its hash:\n%s", out)
			}
		}
	}
	for _, want := range []string{"ID", "CLIENT", "SITE", "REPLACE", "USES LEFT", "EXPIRES", "CREATED BY", "REVOKED", "acme-prod", "yes"} {
		if !strings.Contains(table, want) {
			t.Errorf("enroll-token list lacks %q:\n%s", want, table)
		}
	}

	s.enroll(t, plain, "acme-test", "acme")
	if n := s.enrollTokens(t, support)[0].UsesLeft; n != 2 {
		t.Errorf("uses left after one enrollment: %d", n)
	}
	id := fmt.Sprint(list[0].ID)
	if out := s.mustCLI(support, "enroll-token", "revoke", id); !strings.Contains(out, "revoked enroll token "+id) {
		t.Errorf("revoke output %q", out)
	}
	if s.enrollTokens(t, support)[0].RevokedAt == nil {
		t.Error("enroll-token list does not show the token as revoked")
	}
	_, err := agentapi.New(s.URL).Enroll(context.Background(), protocol.EnrollRequest{Token: plain, Site: "acme-dr", Client: "acme", Product: "acme-erp"})
	if !agentapi.IsUnauthorized(err) || !strings.Contains(err.Error(), "revoked") {
		t.Errorf("enrolling with a revoked token: %v, want 401 saying it was revoked", err)
	}
	if r := s.cli(support, "enroll-token", "revoke", id); r.code != 1 || !strings.Contains(r.stderr, "already revoked") {
		t.Errorf("revoking twice: exit %d %q", r.code, r.stderr)
	}
	if r := s.cli(support, "enroll-token", "revoke", "999"); r.code != 1 || !strings.Contains(r.stderr, "no enroll token 999") {
		t.Errorf("revoking an unknown token: exit %d %q", r.code, r.stderr)
	}
	for _, args := range [][]string{
		{"enroll-token", "create", "--client", "acme", "--replace"},
		{"enroll-token", "revoke"},
		{"enroll-token", "revoke", "abc"},
	} {
		if r := s.cli(support, args...); r.code != 2 {
			t.Errorf("updateserver %s: exit %d %q, want 2 (usage)", strings.Join(args, " "), r.code, r.stderr)
		}
	}
	viewer := s.newToken(protocol.RoleViewer)
	for _, args := range [][]string{{"enroll-token", "list"}, {"enroll-token", "revoke", "2"}} {
		if r := s.cli(viewer, args...); r.code != 1 || !strings.Contains(r.stderr, "needs the support role") {
			t.Errorf("viewer: updateserver %s: exit %d %q", strings.Join(args, " "), r.code, r.stderr)
		}
	}
	if r := s.cli(support, "enroll-token", "create", "--help"); r.code != 0 || !strings.Contains(r.stdout, "Site names are global") {
		t.Errorf("enroll-token create --help: exit %d\n%s", r.code, r.stdout)
	}
}
