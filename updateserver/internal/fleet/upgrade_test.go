package fleet

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/fault"
	"github.com/dropless/dropless/updateserver/internal/store"
)

// TestJobsPerProduct: a site runs its product and the agent; each has its
// own open job, planned from its own installed version. The check-in
// hands out one job at a time, the site's oldest open one.
func TestJobsPerProduct(t *testing.T) {
	tf := newTestFleet(t)
	tf.publish("acme-erp", "1.0.0", "")
	tf.publish("acme-erp", "1.1.0", "")
	tf.publish(AgentProduct, "0.9.0", "")
	tf.publish(AgentProduct, "0.10.0", ">= 0.9")
	tf.enroll("s1", "acme", "1.0.0", "0.9.0")
	app := tf.upgrade(protocol.UpgradeRequest{Site: "s1", To: "1.1.0"})
	agent := tf.upgrade(protocol.UpgradeRequest{Site: "s1", Product: AgentProduct, To: "0.10.0"})
	if len(agent) != 1 || agent[0].Product != AgentProduct || agent[0].From != "0.9.0" || agent[0].To != "0.10.0" {
		t.Fatalf("the agent's upgrade: %s, want %s 0.9.0 -> 0.10.0", ids(agent), AgentProduct)
	}
	if st, _ := tf.Site(tf.ctx, "s1"); st.TargetVersion != "1.1.0" {
		t.Errorf("target version %q: the agent's job must not change the product's target", st.TargetVersion)
	}
	report := protocol.CheckinRequest{InstalledVersion: "1.0.0", AgentVersion: "0.9.0", State: protocol.StateIdle}
	if a := tf.checkin("s1", report); a == nil || a.JobID != app[0].ID {
		t.Fatalf("first check-in got %+v, want the product's job (the oldest)", a)
	}
	tf.events("s1", app[0].ID, 1, "downloading", "committed")
	report.InstalledVersion = "1.1.0"
	if a := tf.checkin("s1", report); a == nil || a.JobID != agent[0].ID || a.Product != AgentProduct {
		t.Fatalf("next check-in got %+v, want the agent's job", a)
	}
	// Another product than the site's or the agent: refused.
	_, err := tf.Upgrade(tf.ctx, protocol.UpgradeRequest{Site: "s1", Product: "globex-crm", To: "1.1.0"}, "support")
	if fe, ok := fault.As(err); !ok || fe.Kind != fault.Invalid || !strings.Contains(fe.Msg, "runs acme-erp") {
		t.Errorf("upgrade of another product: %v", err)
	}
	// An agent that reports no release version is not planned from a guess.
	tf.enroll("s2", "acme", "1.0.0", "dev-build")
	_, err = tf.Upgrade(tf.ctx, protocol.UpgradeRequest{Site: "s2", Product: AgentProduct, To: "0.10.0"}, "support")
	if fe, ok := fault.As(err); !ok || fe.Kind != fault.Conflict || !strings.Contains(fe.Msg, `"dev-build"`) {
		t.Errorf("upgrade of an agent of no release version: %v", err)
	}
}

// TestUpgradeSaysDoneAndOffline: the answer names the sites already on the
// version (nothing to do) and the sites whose jobs wait until they check
// in.
func TestUpgradeSaysDoneAndOffline(t *testing.T) {
	tf := newTestFleet(t)
	tf.publish("acme-erp", "1.0.0", "")
	tf.publish("acme-erp", "1.1.0", "")
	tf.enroll("gone", "acme", "1.0.0", "0.9.0")
	tf.advance(time.Hour)
	tf.enroll("done", "acme", "1.1.0", "0.9.0")
	tf.enroll("live", "acme", "1.0.0", "0.9.0")
	resp, err := tf.Upgrade(tf.ctx, protocol.UpgradeRequest{Client: "acme", To: "1.1.0"}, "support")
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Jobs) != 2 || !slices.Equal(resp.Done, []string{"done"}) || !slices.Equal(resp.Offline, []string{"gone"}) {
		t.Fatalf("jobs %s, done %v, offline %v; want 2 jobs, done [done], offline [gone]", ids(resp.Jobs), resp.Done, resp.Offline)
	}
}

// TestUpgradeToYankedNeedsForce: a yanked release is assigned only when
// support insists (--force), and the refusal says why it was yanked.
func TestUpgradeToYankedNeedsForce(t *testing.T) {
	tf := newTestFleet(t)
	tf.publish("acme-erp", "1.0.0", "")
	tf.publish("acme-erp", "1.1.0", "")
	if _, err := tf.Store.Yank(tf.ctx, tf.now(), protocol.Release{Product: "acme-erp", Version: "1.1.0"}, "wrong VAT rate", store.Audit{Actor: "test", Action: "release.yank"}); err != nil {
		t.Fatal(err)
	}
	tf.enroll("prod", "acme", "1.0.0", "0.9.0")
	_, err := tf.Upgrade(tf.ctx, protocol.UpgradeRequest{Site: "prod", To: "1.1.0"}, "support")
	if fe, ok := fault.As(err); !ok || fe.Kind != fault.Conflict || !strings.Contains(fe.Msg, "yanked (wrong VAT rate)") || !strings.Contains(fe.Msg, "--force") {
		t.Fatalf("upgrade to a yanked release: %v; want a conflict naming the reason and --force", err)
	}
	resp, err := tf.Upgrade(tf.ctx, protocol.UpgradeRequest{Site: "prod", To: "1.1.0", Force: true}, "support")
	if err != nil || len(resp.Jobs) != 1 || resp.Jobs[0].To != "1.1.0" {
		t.Fatalf("upgrade --force to a yanked release: %+v, %v", resp, err)
	}
}
