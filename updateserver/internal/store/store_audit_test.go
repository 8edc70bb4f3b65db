package store

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
)

var parseActorTests = []struct {
	name, actor string
	wantName    string
	wantID      int64
	wantOK      bool
}{
	{"token", "alice (token 3, support)", "alice", 3, true},
	{"name with spaces", "build bot (token 12, release)", "build bot", 12, true},
	{"name that looks like an actor", "bob (token 1, admin) (token 7, viewer)", "bob (token 1, admin)", 7, true},
	{"name with a parenthesis", "x) (token 9, admin)", "x)", 9, true},
	{"the server", "updateserver", "", 0, false},
	{"the first admin's creator", "updateserver init", "", 0, false},
	{"an enroll token", "enroll token 5", "", 0, false},
	{"no name", " (token 3, admin)", "", 0, false},
	{"unknown role", "eve (token 3, root)", "", 0, false},
	{"token 0", "eve (token 0, admin)", "", 0, false},
	{"id overflow", "eve (token 99999999999999999999, admin)", "", 0, false},
	{"trailing text", "eve (token 3, admin) ", "", 0, false},
	{"suffix on a later line", "eve (token 3, admin)\n", "", 0, false},
}

func TestParseActor(t *testing.T) {
	for _, tt := range parseActorTests {
		t.Run(tt.name, func(t *testing.T) {
			name, id, ok := ParseActor(tt.actor)
			if name != tt.wantName || id != tt.wantID || ok != tt.wantOK {
				t.Errorf("ParseActor(%q) = %q, %d, %v; want %q, %d, %v", tt.actor, name, id, ok, tt.wantName, tt.wantID, tt.wantOK)
			}
		})
	}
}

// FuzzParseActor: whatever a token is named, ParseActor gives back the
// name and ID that Token.Actor put in.
func FuzzParseActor(f *testing.F) {
	for _, tt := range parseActorTests {
		f.Add(tt.actor, int64(42))
	}
	roles := []string{protocol.RoleAdmin, protocol.RoleRelease, protocol.RoleSupport, protocol.RoleViewer}
	f.Fuzz(func(t *testing.T, name string, id int64) {
		if name == "" || id <= 0 {
			return
		}
		tok := Token{Name: name, ID: id, Role: roles[id%4]}
		gotName, gotID, ok := ParseActor(tok.Actor())
		if !ok || gotName != name || gotID != id {
			t.Fatalf("ParseActor(%q) = %q, %d, %v", tok.Actor(), gotName, gotID, ok)
		}
	})
}

func addAudit(t *testing.T, s *Store, at time.Time, a Audit) {
	t.Helper()
	if err := s.tx(context.Background(), func(tx *sql.Tx) error { return insertAudit(context.Background(), tx, at, a) }); err != nil {
		t.Fatal(err)
	}
}

func auditIDs(t *testing.T, s *Store, q AuditQuery) []int64 {
	t.Helper()
	if q.Limit == 0 {
		q.Limit = 1000
	}
	es, err := s.AuditLog(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	ids := []int64{}
	for i, e := range es {
		if i > 0 && e.ID >= es[i-1].ID {
			t.Fatalf("entries not newest first: %+v", es)
		}
		ids = append(ids, e.ID)
	}
	return ids
}

// TestAuditLogFilters: the actor filter takes every token of a name and
// nothing else, whatever the names look like; since keeps what happened
// from then on; before and limit page through the log without gaps or
// repeats.
func TestAuditLogFilters(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tok := func(name, role string) Token {
		tk, err := s.AddToken(ctx, t0.Add(-72*time.Hour), NewToken{Name: name, Role: role, Secret: name + role, By: "updateserver init"})
		if err != nil {
			t.Fatal(err)
		}
		tk.Role = role
		return tk
	}
	alice1 := tok("alice", protocol.RoleSupport)
	if _, err := s.RevokeToken(ctx, t0.Add(-71*time.Hour), "alice", "updateserver init"); err != nil {
		t.Fatal(err)
	}
	alice2 := tok("alice", protocol.RoleAdmin) // the same person's next token
	alicia := tok("alice2", protocol.RoleSupport)
	tricky := tok("alice (token 1, support)", protocol.RoleViewer)
	start := auditIDs(t, s, AuditQuery{})[0] // the token.create and token.revoke entries so far
	if start != 5 {
		t.Fatalf("%d audit entries from making tokens, want 5", start)
	}

	type entry struct {
		at    time.Duration // before t0
		actor string
	}
	log := []entry{
		{48 * time.Hour, alice1.Actor()},
		{47 * time.Hour, "updateserver"},
		{3 * time.Hour, alicia.Actor()},
		{2 * time.Hour, tricky.Actor()},
		{90 * time.Minute, alice2.Actor()},
		{time.Minute, "enroll token 4"},
		{0, alice2.Actor()},
	}
	ids := map[string][]int64{}
	for i, e := range log {
		addAudit(t, s, t0.Add(-e.at), Audit{Actor: e.actor, Action: "test", Object: fmt.Sprint(i)})
		ids[e.actor] = append(ids[e.actor], start+int64(i)+1)
	}
	newest := func(xs ...int64) []int64 {
		xs = slices.Clone(xs)
		slices.Sort(xs)
		slices.Reverse(xs)
		return xs
	}
	a1, a2 := ids[alice1.Actor()], ids[alice2.Actor()]
	for _, tt := range []struct {
		name string
		q    AuditQuery
		want []int64
	}{
		{"every token named alice", AuditQuery{Actor: "alice"}, newest(a1[0], a2[0], a2[1])},
		{"alice2 is another name", AuditQuery{Actor: "alice2"}, ids[alicia.Actor()]},
		{"a name that looks like an actor", AuditQuery{Actor: "alice (token 1, support)"}, ids[tricky.Actor()]},
		{"the whole actor is no name", AuditQuery{Actor: alice2.Actor()}, []int64{}},
		{"the server", AuditQuery{Actor: "updateserver"}, ids["updateserver"]},
		{"an enroll token", AuditQuery{Actor: "enroll token 4"}, ids["enroll token 4"]},
		{"nobody", AuditQuery{Actor: "mallory"}, []int64{}},
		{"since 24h", AuditQuery{Since: t0.Add(-24 * time.Hour)}, newest(start+3, start+4, start+5, start+6, start+7)},
		{"since is inclusive", AuditQuery{Since: t0.Add(-90 * time.Minute)}, newest(start+5, start+6, start+7)},
		{"since and actor", AuditQuery{Since: t0.Add(-24 * time.Hour), Actor: "alice"}, newest(a2...)},
		{"since in the future", AuditQuery{Since: t0.Add(time.Second)}, []int64{}},
		{"since long ago", AuditQuery{Since: time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), Before: start + 1}, newest(start-4, start-3, start-2, start-1, start)},
		{"since far ahead", AuditQuery{Since: time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)}, []int64{}},
		{"limit", AuditQuery{Limit: 2}, newest(start+6, start+7)},
		{"before", AuditQuery{Before: start + 3, Limit: 2}, newest(start+1, start+2)},
		{"before and actor", AuditQuery{Before: a2[1], Actor: "alice"}, newest(a1[0], a2[0])},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := auditIDs(t, s, tt.q); !slices.Equal(got, tt.want) {
				t.Errorf("ids %v, want %v", got, tt.want)
			}
		})
	}

	// Pages of 3 through the whole log: every entry once, in order.
	all := auditIDs(t, s, AuditQuery{})
	var paged []int64
	q := AuditQuery{Limit: 3}
	for {
		page := auditIDs(t, s, q)
		paged = append(paged, page...)
		if len(page) < q.Limit {
			break
		}
		q.Before = page[len(page)-1]
	}
	if !slices.Equal(paged, all) {
		t.Errorf("paged %v, want %v", paged, all)
	}

	// What an entry carries.
	es, err := s.AuditLog(ctx, AuditQuery{Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if e := es[0]; e.Actor != alice2.Actor() || e.ActorName != "alice" || e.TokenID != alice2.ID || !e.At.Equal(t0) || e.Action != "test" {
		t.Errorf("newest entry %+v", e)
	}
}

// TestAuditMigratesFromV4: the audit log of a version-4 server is filtered
// like a new one after the upgrade: by each token's name, and by time.
func TestAuditMigratesFromV4(t *testing.T) {
	s := openFrozen(t, "4", `
INSERT INTO tokens (id, name, role, hash, created_at, created_by) VALUES
	(1, 'admin', 'admin', 'h1', '2025-01-01T00:00:00Z', 'updateserver init'),
	(2, 'alice', 'support', 'h2', '2025-01-01T00:00:00Z', 'admin (token 1, admin)'),
	(3, 'alice (token 2, support)', 'viewer', 'h3', '2025-01-01T00:00:00Z', 'admin (token 1, admin)');
INSERT INTO audit_log (id, at, actor, action, object, detail) VALUES
	(1, '2025-01-01T00:00:00Z', 'updateserver', 'repo.init', 'tuf repository', ''),
	(2, '2025-01-01T00:00:00.5Z', 'updateserver init', 'token.create', 'token 1', ''),
	(3, '2025-01-02T03:04:05.123456789Z', 'alice (token 2, support)', 'upgrade', 'site a', 'reason=x'),
	(4, '2025-01-03T00:00:00Z', 'alice (token 2, support) (token 3, viewer)', 'upgrade', 'site b', ''),
	(5, 'not a time', 'enroll token 9', 'site.enroll', 'site c', '');
`)
	for _, tt := range []struct {
		name string
		q    AuditQuery
		want []int64
	}{
		{"token name", AuditQuery{Actor: "alice"}, []int64{3}},
		{"a name that looks like an actor", AuditQuery{Actor: "alice (token 2, support)"}, []int64{4}},
		{"not a token", AuditQuery{Actor: "updateserver init"}, []int64{2}},
		{"enroll token", AuditQuery{Actor: "enroll token 9"}, []int64{5}},
		{"since, to the millisecond", AuditQuery{Since: time.Date(2025, 1, 2, 3, 4, 5, 123e6, time.UTC)}, []int64{4, 3}},
		{"since, a millisecond later", AuditQuery{Since: time.Date(2025, 1, 2, 3, 4, 5, 124e6, time.UTC)}, []int64{4}},
		{"since a fraction", AuditQuery{Since: time.Date(2025, 1, 1, 0, 0, 0, 5e8, time.UTC)}, []int64{4, 3, 2}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := auditIDs(t, s, tt.q); !slices.Equal(got, tt.want) {
				t.Errorf("ids %v, want %v", got, tt.want)
			}
		})
	}
	es, err := s.AuditLog(context.Background(), AuditQuery{Actor: "alice", Limit: 10})
	if err != nil || len(es) != 1 || es[0].TokenID != 2 || es[0].Detail != "reason=x" {
		t.Errorf("v4 entry after the upgrade: %+v %v", es, err)
	}
}
