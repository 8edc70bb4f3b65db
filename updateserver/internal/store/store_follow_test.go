package store

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
)

// TestFollowAndJobSummaries: follows persist per site and product
// (SitesFollowing names a channel's followers of one product); a site's
// summary has its running job's step (a running job wins over a pending
// one) and its newest ended job by end time, not by creation.
func TestFollowAndJobSummaries(t *testing.T) {
	ctx := context.Background()
	s := openFrozen(t, "8", `
INSERT INTO sites (site, client, product, credential_hash, enrolled_at) VALUES
	('a', 'acme', 'erp', 'h1', '2025-01-01T00:00:00Z'),
	('b', 'acme', 'erp', 'h2', '2025-01-01T00:00:00Z'),
	('c', 'acme', 'crm', 'h3', '2025-01-01T00:00:00Z'),
	('d', 'globex', 'erp', 'h4', '2025-01-01T00:00:00Z');
INSERT INTO jobs (id, site, product, from_version, to_version, target, result, reason, created_at, created_by, ended_at, last_progress_at) VALUES
	('a1', 'a', 'erp', '1.0', '1.1', 't', 'rolled_back', 'health check failed', '2025-01-01T00:00:00Z', 'x', '2025-01-03T00:00:00Z', '2025-01-01T00:00:00Z'),
	('a2', 'a', 'erp', '1.0', '1.2', 't', 'failed', 'cancelled: superseded', '2025-01-02T00:00:00Z', 'x', '2025-01-02T00:00:00Z', '2025-01-02T00:00:00Z'),
	('a3', 'a', 'erp', '1.0', '1.3', 't', 'pending', '', '2025-01-04T00:00:00Z', 'x', NULL, '2025-01-04T00:00:00Z'),
	('b1', 'b', 'erp', '1.0', '1.1', 't', 'pending', '', '2025-01-01T00:00:00Z', 'x', NULL, '2025-01-01T00:00:00Z'),
	('b2', 'b', 'updateagent', '0.9', '1.0', 't', 'running', '', '2025-01-02T00:00:00Z', 'x', NULL, '2025-01-02T00:00:00Z');
INSERT INTO job_events (job_id, seq, state, at, received_at) VALUES
	('b2', 1, 'downloading', '2025-01-02T00:00:00Z', '2025-01-02T00:00:00Z'),
	('b2', 2, 'stopping', '2025-01-02T00:00:01Z', '2025-01-02T00:00:01Z');
`)
	now := time.Date(2025, 2, 1, 0, 0, 0, 0, time.UTC)
	if err := s.SetFollow(ctx, now, []string{"a", "c", "d"}, "stable", "~> 1.2", Audit{Actor: "sup", Action: "sites.follow"}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetFollow(ctx, now, []string{"b", "nowhere"}, "stable", "", Audit{Actor: "sup", Action: "sites.follow"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("following with a site not enrolled: %v, want ErrNotFound", err)
	}
	if names, err := s.SitesFollowing(ctx, "erp", "stable"); err != nil || strings.Join(names, ",") != "a,d" {
		t.Fatalf("SitesFollowing(erp, stable) = %v %v, want a,d (b's follow was refused whole)", names, err)
	}
	if names, _ := s.SitesFollowing(ctx, "erp", "beta"); len(names) != 0 {
		t.Fatalf("SitesFollowing(erp, beta) = %v", names)
	}
	if st, _ := s.GetSite(ctx, "a"); st.Channel != "stable" || st.Pin != "~> 1.2" {
		t.Fatalf("site a: channel %q pin %q", st.Channel, st.Pin)
	}
	if err := s.SetFollow(ctx, now, []string{"d"}, "", "", Audit{Actor: "sup", Action: "sites.unfollow"}); err != nil {
		t.Fatal(err)
	}
	if names, _ := s.SitesFollowing(ctx, "erp", "stable"); strings.Join(names, ",") != "a" {
		t.Fatalf("after unfollowing d: %v, want a", names)
	}

	sums, err := s.JobSummaries(ctx, SiteFilter{Client: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]JobSummary{
		"a": {OpenResult: protocol.ResultPending, LastResult: protocol.ResultRolledBack, LastReason: "health check failed"},
		"b": {OpenResult: protocol.ResultRunning, Step: "stopping"},
	}
	if len(sums) != len(want) {
		t.Errorf("summaries of %d sites, want %d: %+v", len(sums), len(want), sums)
	}
	for site, w := range want {
		if sums[site] != w {
			t.Errorf("summary of %s = %+v, want %+v", site, sums[site], w)
		}
	}
}
