package store

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
)

// openFrozen makes a database of frozen schema version v holding rows,
// then opens it with the current code, which migrates it.
func openFrozen(t *testing.T, v string, rows string) *Store {
	sqliteOnly(t)
	t.Helper()
	ddl, err := os.ReadFile(filepath.Join("testdata", "schema-"+v+".sql"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "old.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{string(ddl), rows, "PRAGMA user_version = " + v} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatalf("open a v%s database: %v", v, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestTokensMigrateFromV3: tokens and enroll tokens of a version-3 server
// keep working after the upgrade: none expires, revoked stays revoked,
// names given twice are revoked together, old enroll tokens are bound to
// no site and replace none.
func TestTokensMigrateFromV3(t *testing.T) {
	s := openFrozen(t, "3", `
INSERT INTO tokens (name, role, hash, created_at, created_by, revoked_at) VALUES
	('admin', 'admin', '`+HashSecret("admin-secret")+`', '2025-01-01T00:00:00Z', 'updateserver init', NULL),
	('ci', 'release', '`+HashSecret("ci-1")+`', '2025-01-02T00:00:00Z', 'admin', NULL),
	('ci', 'release', '`+HashSecret("ci-2")+`', '2025-01-03T00:00:00Z', 'admin', NULL),
	('old', 'viewer', '`+HashSecret("old")+`', '2025-01-03T00:00:00Z', 'admin', '2025-02-01T00:00:00Z');
INSERT INTO enroll_tokens (hash, client, expires_at, uses_left, created_at, created_by) VALUES
	('`+HashSecret("dle_old")+`', 'acme', '2999-01-01T00:00:00Z', 5, '2025-01-01T00:00:00Z', 'admin');
INSERT INTO sites (site, client, product, credential_hash, enrolled_at) VALUES
	('acme-prod', 'acme', 'erp', '`+HashSecret("dla_cred")+`', '2025-01-01T00:00:00Z');
`)
	ctx := context.Background()
	now := time.Now()
	tok, err := s.Authenticate(ctx, "admin-secret", now)
	if err != nil || tok.Role != protocol.RoleAdmin || tok.ExpiresAt != nil {
		t.Fatalf("v3 admin token after the upgrade: %+v %v", tok, err)
	}
	if _, err := s.Authenticate(ctx, "old", now); !errors.Is(err, ErrTokenRevoked) {
		t.Errorf("v3 revoked token: %v, want ErrTokenRevoked", err)
	}
	if _, err := s.AddToken(ctx, now, NewToken{Name: "ci", Role: "viewer", Secret: "x", By: "t"}); !errors.Is(err, ErrTokenNameTaken) {
		t.Errorf("new token named like a live v3 one: %v, want ErrTokenNameTaken", err)
	}
	if _, err := s.AddToken(ctx, now, NewToken{Name: "old", Role: "viewer", Secret: "y", By: "t"}); err != nil {
		t.Errorf("new token named like a revoked v3 one: %v", err)
	}
	if n, err := s.RevokeToken(ctx, now, "ci", "t"); n != 2 || err != nil {
		t.Errorf("revoke the two v3 tokens named ci: %d %v, want 2", n, err)
	}
	if _, err := s.RevokeToken(ctx, now, "admin", "t"); !errors.Is(err, ErrLastAdmin) {
		t.Errorf("revoke the only admin: %v, want ErrLastAdmin", err)
	}

	ets, err := s.ListEnrollTokens(ctx)
	if err != nil || len(ets) != 1 || ets[0].Site != "" || ets[0].Replace || ets[0].UsesLeft != 5 || ets[0].RevokedAt != nil {
		t.Fatalf("v3 enroll token after the upgrade: %+v %v", ets, err)
	}
	if _, err := s.Enroll(ctx, now, "dle_old", protocol.EnrollRequest{Site: "acme-test", Client: "acme", Product: "erp"}, "dla_new"); err != nil {
		t.Errorf("v3 enroll token, new site: %v", err)
	}
	if _, err := s.Enroll(ctx, now, "dle_old", protocol.EnrollRequest{Site: "acme-prod", Client: "acme", Product: "erp"}, "dla_steal"); !errors.Is(err, ErrSiteEnrolled) {
		t.Errorf("v3 enroll token taking over a v3 site: %v, want ErrSiteEnrolled", err)
	}
	if site, err := s.SiteByCredential(ctx, "dla_cred"); err != nil || site != "acme-prod" {
		t.Errorf("v3 site credential after a refused takeover: %q %v", site, err)
	}
}

// TestTokenUsedAtMostOncePerMinute: a token's last use is written at most
// once a minute, so a busy token does not cost a write per request.
func TestTokenUsedAtMostOncePerMinute(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	a, _ := s.AddToken(ctx, t0, NewToken{Name: "a", Role: "viewer", Secret: "a", By: "t"})
	b, _ := s.AddToken(ctx, t0, NewToken{Name: "b", Role: "viewer", Secret: "b", By: "t"})
	lastUsed := func(name string) time.Time {
		t.Helper()
		all, err := s.ListTokens(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, tk := range all {
			if tk.Name == name && tk.LastUsedAt != nil {
				return tk.LastUsedAt.UTC()
			}
		}
		return time.Time{}
	}
	steps := []struct {
		name string
		id   int64
		at   time.Duration
		want map[string]time.Duration // -1: never used
	}{
		{"first use is written", a.ID, 0, map[string]time.Duration{"a": 0, "b": -1}},
		{"a use 30s later is not", a.ID, 30 * time.Second, map[string]time.Duration{"a": 0, "b": -1}},
		{"another token's use is its own", b.ID, 40 * time.Second, map[string]time.Duration{"a": 0, "b": 40 * time.Second}},
		{"a minute after the write it is written again", a.ID, 61 * time.Second, map[string]time.Duration{"a": 61 * time.Second, "b": 40 * time.Second}},
	}
	for _, st := range steps {
		if err := s.TokenUsed(ctx, st.id, t0.Add(st.at)); err != nil {
			t.Fatal(err)
		}
		for name, d := range st.want {
			want := time.Time{}
			if d >= 0 {
				want = t0.Add(d)
			}
			if got := lastUsed(name); !got.Equal(want) {
				t.Errorf("%s: token %s last used %v, want %v", st.name, name, got, want)
			}
		}
	}
}
