package cli_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/dropless/dropless/pkg/protocol"
)

func (s *server) auditJSON(t *testing.T, args ...string) []protocol.AuditEntry {
	t.Helper()
	var out []protocol.AuditEntry
	raw := s.mustCLI(s.Admin, append([]string{"audit", "list", "--json"}, args...)...)
	if err := json.Unmarshal([]byte(raw), &out); err != nil {
		t.Fatalf("audit list --json %s: %v\n%s", strings.Join(args, " "), err, raw)
	}
	return out
}

// insertOldAudit writes audit entries straight into the server's database,
// as a server that ran long ago would have: n entries by actor at when.
func (s *server) insertOldAudit(t *testing.T, when time.Time, actor string, n int) {
	t.Helper()
	db := s.rawDB(t)
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := tx.Exec(`INSERT INTO audit_log (at, at_ns, actor, actor_name, action, object) VALUES (?, ?, ?, ?, 'old.thing', ?)`,
			when.UTC().Format(time.RFC3339Nano), when.UnixNano(), actor, actor, fmt.Sprintf("thing %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

func actions(es []protocol.AuditEntry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Action+" "+e.Object)
	}
	return out
}

// TestAuditList: an admin sees who did what, when, from which token:
// filtered by the token's name (every token of that name), by time, paged,
// as a table and as JSON; other roles are refused.
func TestAuditList(t *testing.T) {
	s := startServer(t)
	aliceOld := strings.TrimSpace(s.mustCLI(s.Admin, "token", "create", "--role", "support", "--name", "alice"))
	rel := strings.TrimSpace(s.mustCLI(s.Admin, "token", "create", "--role", "release", "--name", "rel"))
	s.mustCLI(aliceOld, "enroll-token", "create", "--client", "acme")
	dir := writeBundle(t, "", map[string]string{"files/VERSION": "1.0.0"})
	s.mustCLI(rel, "release", "publish", "--product", "acme-erp", "--version", "1.0.0", dir)
	s.mustCLI(s.Admin, "token", "revoke", "alice")
	mark := time.Now() // everything below happens after mark
	alice := strings.TrimSpace(s.mustCLI(s.Admin, "token", "create", "--role", "support", "--name", "alice"))
	s.mustCLI(alice, "enroll-token", "create", "--client", "globex")
	s.mustCLI(rel, "release", "promote", "--product", "acme-erp", "--version", "1.0.0", "--channel", "stable")
	tokens := s.tokenList(t)
	aliceIDs := []int64{tokens[1].ID, tokens[3].ID}
	if tokens[1].Name != "alice" || tokens[3].Name != "alice" {
		t.Fatalf("tokens %+v", tokens)
	}

	// The table: one line per entry, newest first, with the token of each.
	out := s.mustCLI(s.Admin, "audit", "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for _, col := range []string{"WHEN", "ACTOR", "ACTION", "OBJECT", "DETAIL"} {
		if !strings.Contains(lines[0], col) {
			t.Errorf("audit list has no %s column:\n%s", col, out)
		}
	}
	for _, want := range []string{
		fmt.Sprintf("rel (token %d, release)", tokens[2].ID), "release.promote", "acme-erp 1.0.0", "channel=stable",
		fmt.Sprintf("alice (token %d, support)", aliceIDs[0]), fmt.Sprintf("alice (token %d, support)", aliceIDs[1]),
		"enroll_token.create", "client=globex", "token.revoke", "release.publish", "updateserver init",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("audit list lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(lines[1], "release.promote") {
		t.Errorf("newest entry is not first:\n%s", out)
	}

	// JSON: an array with the fields scripts rely on.
	var raw []map[string]any
	if err := json.Unmarshal([]byte(s.mustCLI(s.Admin, "audit", "list", "--json")), &raw); err != nil {
		t.Fatal(err)
	}
	if len(raw) != len(lines)-1 {
		t.Errorf("--json has %d entries, the table %d lines", len(raw), len(lines)-1)
	}
	for _, e := range raw {
		for _, k := range []string{"id", "at", "actor", "action", "object", "detail"} {
			if _, ok := e[k]; !ok {
				t.Errorf("JSON entry lacks %q: %v", k, e)
			}
		}
		if at, _ := e["at"].(string); at == "" {
			t.Errorf("at %v", e["at"])
		} else if _, err := time.Parse(time.RFC3339, at); err != nil {
			t.Errorf("at is not RFC 3339: %v", err)
		}
	}

	// --actor: every token named alice, and only those.
	got := s.auditJSON(t, "--actor", "alice")
	if want := []string{"enroll_token.create enroll token 2", "enroll_token.create enroll token 1"}; !slices.Equal(actions(got), want) {
		t.Errorf("--actor alice: %v, want %v", actions(got), want)
	}
	for i, e := range got {
		if e.ActorName != "alice" || e.TokenID != aliceIDs[1-i] {
			t.Errorf("--actor alice entry %+v: want the token of its own", e)
		}
	}
	if got := s.auditJSON(t, "--actor", "rel"); !slices.Equal(actions(got), []string{"release.promote acme-erp 1.0.0", "release.publish acme-erp 1.0.0"}) {
		t.Errorf("--actor rel: %v", actions(got))
	}
	if got := s.auditJSON(t, "--actor", "ali"); len(got) != 0 {
		t.Errorf("--actor ali matches %v: want an exact name only", actions(got))
	}

	// --since: an RFC 3339 time or a duration back from now.
	got = s.auditJSON(t, "--since", mark.Format(time.RFC3339Nano))
	if want := []string{"release.promote acme-erp 1.0.0", "enroll_token.create enroll token 2", fmt.Sprintf("token.create token %d", aliceIDs[1])}; !slices.Equal(actions(got), want) {
		t.Errorf("--since mark: %v, want %v", actions(got), want)
	}
	s.insertOldAudit(t, time.Now().Add(-48*time.Hour), "someone", 1)
	all := s.auditJSON(t)
	day := s.auditJSON(t, "--since", "24h")
	if len(day) != len(all)-1 || slices.Contains(actions(day), "old.thing thing 0") {
		t.Errorf("--since 24h: %v, want all but the entry of two days ago", actions(day))
	}
	if week := s.auditJSON(t, "--since", "7d"); len(week) != len(all) {
		t.Errorf("--since 7d: %d entries, want %d", len(week), len(all))
	}
	if got := s.auditJSON(t, "--since", "24h", "--actor", "someone"); len(got) != 0 {
		t.Errorf("--since 24h --actor someone: %v", actions(got))
	}

	// Paging: --limit shows the newest N and says how to see the rest;
	// --before ID goes on from there, with no gap and no repeat.
	r := s.cli(s.Admin, "audit", "list", "--limit", "3")
	if r.code != 0 || strings.Count(strings.TrimSpace(r.stdout), "\n") != 3 {
		t.Fatalf("--limit 3: exit %d\n%s", r.code, r.stdout)
	}
	var paged []protocol.AuditEntry
	before := int64(0)
	for {
		page := s.auditJSON(t, "--limit", "3", "--before", fmt.Sprint(before))
		paged = append(paged, page...)
		if len(page) < 3 {
			break
		}
		before = page[2].ID
	}
	if len(paged) != len(all) {
		t.Fatalf("paged through %d entries, want %d", len(paged), len(all))
	}
	for i := range all {
		if paged[i].ID != all[i].ID {
			t.Fatalf("page entry %d is %d, want %d", i, paged[i].ID, all[i].ID)
		}
	}
	if want := fmt.Sprintf("older ones with --before %d", all[2].ID); !strings.Contains(r.stderr, want) {
		t.Errorf("--limit 3 stderr %q: want %q", r.stderr, want)
	}
	if r := s.cli(s.Admin, "audit", "list", "--limit", fmt.Sprint(len(all))); r.code != 0 || r.stderr != "" {
		t.Errorf("--limit with room for every entry: exit %d, stderr %q: want no hint", r.code, r.stderr)
	}

	// More than the server gives in one answer: the command fetches page
	// after page.
	s.insertOldAudit(t, time.Now().Add(-time.Hour), "bulk", 2*protocol.AuditLimitMax+5)
	if got := s.auditJSON(t, "--actor", "bulk", "--limit", "100000"); len(got) != 2*protocol.AuditLimitMax+5 {
		t.Errorf("--limit 100000: %d entries, want %d", len(got), 2*protocol.AuditLimitMax+5)
	}
	got = s.auditJSON(t, "--limit", fmt.Sprint(protocol.AuditLimitMax+7))
	if len(got) != protocol.AuditLimitMax+7 {
		t.Errorf("--limit %d: %d entries", protocol.AuditLimitMax+7, len(got))
	}
	for i := 1; i < len(got); i++ {
		if got[i].ID >= got[i-1].ID {
			t.Fatalf("entry %d (id %d) after id %d: not newest first, or repeated", i, got[i].ID, got[i-1].ID)
		}
	}

	// Usage errors, and who may read the log.
	for _, args := range [][]string{
		{"--since", "yesterday"}, {"--since", "-1h"}, {"--since", "0s"}, {"--since", "2025-13-01"},
		{"--limit", "0"}, {"--limit", "x"}, {"--before", "-1"}, {"--actor", ""}, {"extra"},
	} {
		r := s.cli(s.Admin, append([]string{"audit", "list"}, args...)...)
		if r.code != 2 || strings.Count(strings.TrimSpace(r.stderr), "\n") > 0 {
			t.Errorf("audit list %s: exit %d, stderr %q: want 2 and one line", strings.Join(args, " "), r.code, r.stderr)
		}
	}
	if r := s.cli(s.Admin, "audit", "list", "--since", "yesterday"); !strings.Contains(r.stderr, "--since") || !strings.Contains(r.stderr, "24h") {
		t.Errorf("bad --since: %q: want the flag named and an example", r.stderr)
	}
	if r := s.cli(s.Admin, "audit", "list", "--help"); r.code != 0 || !strings.Contains(r.stdout, "--actor") {
		t.Errorf("audit list --help: exit %d\n%s", r.code, r.stdout)
	}
	for _, role := range []string{protocol.RoleViewer, protocol.RoleSupport, protocol.RoleRelease} {
		if r := s.cli(s.newToken(role), "audit", "list"); r.code != 1 || !strings.Contains(r.stderr, "needs the admin role") {
			t.Errorf("%s reading the audit log: exit %d %q", role, r.code, r.stderr)
		}
	}
}

// TestAuditAPIBadParameters: each bad parameter of GET /api/v1/audit is
// refused with 400 and a message that names it.
func TestAuditAPIBadParameters(t *testing.T) {
	s := startServer(t)
	for _, tt := range []struct{ param, value string }{
		{"limit", "0"}, {"limit", "1001"}, {"limit", "ten"}, {"limit", "99999999999999999999"},
		{"before", "0"}, {"before", "-5"}, {"before", "x"},
		{"since", "soon"}, {"since", "-24h"}, {"since", "2025-06-01"},
		{"actor", "a\x1b[2Jb"}, {"actor", strings.Repeat("a", 600)}, {"actor", "\xff"},
	} {
		code, body := s.api("GET", "/api/v1/audit?"+url.Values{tt.param: {tt.value}}.Encode(), s.Admin, nil)
		var er protocol.ErrorResponse
		json.Unmarshal(body, &er)
		if code != http.StatusBadRequest || !strings.HasPrefix(er.Error.Message, tt.param+" ") {
			t.Errorf("%s=%q: %d %s, want 400 naming %s", tt.param, tt.value, code, body, tt.param)
		}
	}
	// Good ones: the default page, and the largest.
	for _, q := range []string{"", "limit=1000&since=24h&actor=admin", "since=2025-06-01T00:00:00Z&before=1"} {
		if code, body := s.api("GET", "/api/v1/audit?"+q, s.Admin, nil); code != http.StatusOK {
			t.Errorf("%s: %d %s", q, code, body)
		}
	}
}
