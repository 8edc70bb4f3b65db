package fleet

import (
	"database/sql"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/fault"
	"github.com/dropless/dropless/updateserver/internal/store"
)

// TestFrozenRowsSurvive: a server's rows frozen at schema 3
// (store/testdata/rows-3.sql) open with the current code and behave: a
// site's history reads as it did, tokens authenticate (the revoked one
// does not), an enroll token still enrolls, a pending hop is handed out
// and the next one follows it, and a job an agent ran before the
// upgrade is never superseded and ends as its agent reports.
func TestFrozenRowsSurvive(t *testing.T) {
	path := filepath.Join(t.TempDir(), "frozen.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"schema-3.sql", "rows-3.sql"} {
		q, err := os.ReadFile(filepath.Join("..", "store", "testdata", f))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(string(q)); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
	}
	if _, err := db.Exec(`PRAGMA user_version = 3`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	tf := newTestFleetOn(t, path)
	ctx := tf.ctx

	// Tokens.
	for secret, want := range map[string]string{"dlo_frozen-admin": protocol.RoleAdmin, "dlo_frozen-support": protocol.RoleSupport} {
		tok, err := tf.Store.Authenticate(ctx, secret, tf.now())
		if err != nil || tok.Role != want {
			t.Errorf("token %s: %+v %v, want role %s", secret, tok, err, want)
		}
	}
	if _, err := tf.Store.Authenticate(ctx, "dlo_frozen-old", tf.now()); err == nil {
		t.Error("the revoked token authenticates")
	}
	if _, err := tf.Enroll(ctx, protocol.EnrollRequest{Token: "dle_frozen-acme", Site: "acme-dr", Client: "acme", Product: "acme-erp"}); err != nil {
		t.Errorf("the frozen enroll token: %v", err)
	}
	if site, err := tf.Store.SiteByCredential(ctx, "dla_acme-prod"); err != nil || site != "acme-prod" {
		t.Errorf("an agent credential: %q %v", site, err)
	}

	// A site's history.
	st, err := tf.Site(ctx, "acme-prod")
	if err != nil {
		t.Fatal(err)
	}
	if st.InstalledVersion != "1.1.0" || st.CurrentJob != nil || st.LastJob == nil || st.LastJob.ID != "job-0002" {
		t.Fatalf("acme-prod: %+v", st)
	}
	last := st.LastJob
	if last.Result != protocol.ResultRolledBack || last.Reason != "health check: GET /health answered 503 (1.1.0 runs again)" || len(last.Events) != 4 ||
		last.Events[2].State != protocol.StateRollingBack || last.CreatedBy != "token:support-desk" {
		t.Errorf("acme-prod's last job: %+v", last)
	}
	p, err := tf.History(ctx, "acme-prod", "", 10)
	if err != nil || len(p.Jobs) != 2 || p.Jobs[1].ID != "job-0001" || p.Jobs[1].Result != protocol.ResultSucceeded || p.Jobs[1].StartedAt == nil {
		t.Fatalf("acme-prod's history: %+v %v", p, err)
	}
	if evs, _ := tf.JobEvents(ctx, "job-0001"); len(evs) != 6 || evs[5].Message != "1.1.0 healthy" {
		t.Errorf("job-0001's events: %+v", evs)
	}
	rels, err := tf.Store.ListReleases(ctx, store.ReleaseFilter{Product: "acme-erp"})
	if err != nil || len(rels) != 4 {
		t.Fatalf("releases: %+v %v", rels, err)
	}
	for _, r := range rels {
		if (r.Version == "1.1.1") != r.Yanked || (r.Version == "1.1.0" && !slices.Contains(r.Channels, "stable")) {
			t.Errorf("release %s: yanked %t, channels %v", r.Version, r.Yanked, r.Channels)
		}
	}

	// The pending hops of acme-test: handed out in order.
	a := tf.checkin("acme-test", protocol.CheckinRequest{InstalledVersion: "1.0.0", AgentVersion: "0.3.0", State: protocol.StateIdle})
	if a == nil || a.JobID != "job-0004" || a.Target != "acme-erp/acme-erp-1.1.0.tar.gz" || a.From != "1.0.0" {
		t.Fatalf("acme-test's check-in: %+v, want job-0004", a)
	}
	tf.events("acme-test", "job-0004", 1, "downloading", "committed")
	a = tf.checkin("acme-test", protocol.CheckinRequest{InstalledVersion: "1.1.0", AgentVersion: "0.3.0", State: protocol.StateIdle})
	if a == nil || a.JobID != "job-0005" {
		t.Fatalf("acme-test's next check-in: %+v, want job-0005", a)
	}

	// globex-prod's agent was running job-0006 before the upgrade: never
	// superseded, it ends as the agent reports.
	_, err = tf.Upgrade(ctx, protocol.UpgradeRequest{Site: "globex-prod", To: "1.2.0", AcceptDrift: true}, "support")
	if fe, ok := fault.As(err); !ok || fe.Kind != fault.Conflict {
		t.Fatalf("upgrade of globex-prod while its job runs: %v, want a conflict", err)
	}
	tf.events("globex-prod", "job-0006", 3, "health_check", "committed: 1.1.0 healthy")
	tf.wantJob("globex-prod", "job-0006", protocol.ResultSucceeded, "")
	// The site reports 1.0.0 until its next check-in, and the planner
	// goes by what the agent reported: two hops, never through the yanked
	// 1.1.1.
	if jobs := tf.upgrade(protocol.UpgradeRequest{Site: "globex-prod", To: "1.2.0", AcceptDrift: true}); len(jobs) != 2 || jobs[0].To != "1.1.0" {
		t.Fatalf("upgrade of globex-prod after its job ended: %s", ids(jobs))
	}
	audit, err := tf.Store.AuditLog(ctx, store.AuditQuery{Limit: 100})
	// The five frozen entries, then the enrollment and the upgrade.
	if err != nil || len(audit) != 7 || audit[6].Action != "token.create" || audit[2].Object != "site acme-test" || audit[0].Action != "upgrade" {
		t.Errorf("audit log: %+v %v", audit, err)
	}
}
