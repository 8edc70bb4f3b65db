package store

import (
	"context"
	"testing"

	"github.com/dropless/dropless/pkg/protocol"
)

// TestPickedUpJobsMigrateToSchema7: schema 7 allows one picked-up open
// job per site and product. A version-5 database holding two (no server
// made them, but the rows could say so) keeps the newer one open and ends
// the older one failed, saying why; jobs of other sites stay as they were.
func TestPickedUpJobsMigrateToSchema7(t *testing.T) {
	s := openFrozen(t, "5", `
INSERT INTO sites (site, client, product, credential_hash, enrolled_at) VALUES
	('a', 'acme', 'erp', 'h1', '2025-01-01T00:00:00Z'),
	('b', 'acme', 'erp', 'h2', '2025-01-01T00:00:00Z');
INSERT INTO jobs (id, site, product, from_version, to_version, target, result, created_at, created_by, last_progress_at, handed_out_at) VALUES
	('old', 'a', 'erp', '1.0.0', '1.1.0', 't', 'running', '2025-01-01T00:00:00Z', 'x', '2025-01-01T00:00:00Z', '2025-01-01T00:00:01Z'),
	('new', 'a', 'erp', '1.0.0', '1.2.0', 't', 'pending', '2025-01-02T00:00:00Z', 'x', '2025-01-02T00:00:00Z', '2025-01-02T00:00:01Z'),
	('other', 'b', 'erp', '1.0.0', '1.2.0', 't', 'running', '2025-01-02T00:00:00Z', 'x', '2025-01-02T00:00:00Z', '2025-01-02T00:00:01Z');
`)
	jobs := map[string]protocol.Job{}
	for _, site := range []string{"a", "b"} {
		js, err := s.SiteJobs(context.Background(), site, "", 10)
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range js {
			jobs[j.ID] = j
		}
	}
	if j := jobs["old"]; j.Result != protocol.ResultFailed || j.Reason == "" || j.EndedAt == nil {
		t.Errorf("the older picked-up job: %+v, want failed with a reason", j)
	}
	if jobs["new"].Result != protocol.ResultPending || jobs["other"].Result != protocol.ResultRunning {
		t.Errorf("the newer job %s, another site's %s: want them as they were", jobs["new"].Result, jobs["other"].Result)
	}
}
