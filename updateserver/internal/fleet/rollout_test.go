package fleet

import (
	"context"
	"database/sql"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/fault"
	"github.com/dropless/dropless/updateserver/internal/store"
	"github.com/dropless/dropless/updateserver/internal/store/storetest"
)

// rolloutFleet is a test fleet with acme-erp 1.0.0 and 1.1.0 published
// and sites enrolled on 1.0.0.
func rolloutFleet(t *testing.T, sites ...string) *testFleet {
	t.Helper()
	tf := newTestFleet(t)
	tf.publish("acme-erp", "1.0.0", "")
	tf.publish("acme-erp", "1.1.0", "")
	for _, s := range sites {
		tf.enroll(s, "acme", "1.0.0", "0.9.0")
	}
	return tf
}

func (tf *testFleet) createRollout(req protocol.RolloutRequest) int64 {
	tf.t.Helper()
	if req.Product == "" {
		req.Product, req.Version = "acme-erp", "1.1.0"
	}
	ro, err := tf.CreateRollout(tf.ctx, req, "support")
	if err != nil {
		tf.t.Fatalf("create rollout %+v: %v", req, err)
	}
	return ro.ID
}

func (tf *testFleet) schedule() {
	tf.t.Helper()
	if _, err := tf.ScheduleRollouts(tf.ctx); err != nil {
		tf.t.Fatal(err)
	}
}

func (tf *testFleet) rollout(id int64) protocol.Rollout {
	tf.t.Helper()
	ro, err := tf.Rollout(tf.ctx, id)
	if err != nil {
		tf.t.Fatal(err)
	}
	return ro
}

// sitesIn returns the rollout's sites with status, in order.
func (tf *testFleet) sitesIn(id int64, status string) []string {
	tf.t.Helper()
	var out []string
	for _, w := range tf.rollout(id).WaveDetail {
		for _, s := range w.Sites {
			if s.Status == status {
				out = append(out, s.Site)
			}
		}
	}
	return out
}

// runJob plays the agent of site: it picks up its assignment and ends it
// with the final state (committed, rolled_back or failed).
func (tf *testFleet) runJob(site, final string) {
	tf.t.Helper()
	a := tf.checkin(site, protocol.CheckinRequest{InstalledVersion: "1.0.0", AgentVersion: "0.9.0", State: protocol.StateIdle})
	if a == nil {
		tf.t.Fatalf("site %s has no job to run", site)
	}
	tf.events(site, a.JobID, 1, "downloading", final+": as the test says")
}

func wantSites(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("%s: %v, want %v", what, got, want)
	}
}

// TestRolloutWaves: the canary alone first, then each wave once the one
// before ended, never more than max parallel sites at once, then
// completed.
func TestRolloutWaves(t *testing.T) {
	all := names("s", 7)
	tf := rolloutFleet(t, append([]string{"canary"}, all...)...)
	id := tf.createRollout(protocol.RolloutRequest{Clients: []string{"acme"}, Canary: []string{"canary"}, Waves: []float64{50, 100}, MaxParallel: 2})
	ro := tf.rollout(id)
	if len(ro.WaveDetail) != 3 || len(ro.WaveDetail[0].Sites) != 1 || !ro.WaveDetail[0].Canary || len(ro.WaveDetail[1].Sites) != 3 || len(ro.WaveDetail[2].Sites) != 4 {
		t.Fatalf("waves %+v, want the canary, then 3 sites (50%% of 8, with the canary), then 4", ro.WaveDetail)
	}
	tf.schedule()
	wantSites(t, "started after create", tf.sitesIn(id, protocol.RolloutSitePending), "canary")
	tf.schedule()
	wantSites(t, "started again", tf.sitesIn(id, protocol.RolloutSitePending), "canary")

	tf.runJob("canary", protocol.StateCommitted)
	tf.schedule()
	wantSites(t, "wave 1, two at once", tf.sitesIn(id, protocol.RolloutSitePending), "s1", "s2")
	tf.runJob("s1", protocol.StateCommitted)
	tf.schedule()
	wantSites(t, "s1 ended: s3 starts", tf.sitesIn(id, protocol.RolloutSitePending), "s2", "s3")
	tf.runJob("s2", protocol.StateCommitted)
	tf.schedule()
	wantSites(t, "wave 2 waits for wave 1's end", tf.sitesIn(id, protocol.RolloutSitePending), "s3")
	tf.runJob("s3", protocol.StateCommitted)
	tf.schedule()
	wantSites(t, "wave 2", tf.sitesIn(id, protocol.RolloutSitePending), "s4", "s5")
	for _, s := range []string{"s4", "s5", "s6", "s7"} {
		tf.runJob(s, protocol.StateCommitted)
		tf.schedule()
	}
	ro = tf.rollout(id)
	if ro.State != protocol.RolloutCompleted || ro.Failures != 0 || ro.Started != 8 || ro.EndedAt == nil {
		t.Fatalf("rollout %s, %d started, %d failures; want completed, 8, 0", ro.State, ro.Started, ro.Failures)
	}
}

// TestRolloutCanaryFails: the andon cord. A canary that fails pauses the
// rollout before any other site is touched; the reason names it. Resume
// goes on with the failure kept, and the next failure pauses it again.
func TestRolloutCanaryFails(t *testing.T) {
	tf := rolloutFleet(t, "canary", "s1", "s2", "s3")
	id := tf.createRollout(protocol.RolloutRequest{Sites: []string{"s1", "s2", "s3"}, Canary: []string{"canary"}, MaxParallel: 1})
	tf.schedule()
	tf.runJob("canary", protocol.StateRolledBack)
	tf.schedule()
	ro := tf.rollout(id)
	if ro.State != protocol.RolloutPaused || !strings.Contains(ro.PauseReason, "canary (job ") || !strings.Contains(ro.PauseReason, "rolled back") {
		t.Fatalf("rollout %s (%q), want paused naming the canary that rolled back", ro.State, ro.PauseReason)
	}
	wantSites(t, "failed", ro.FailedSites, "canary")
	tf.schedule()
	wantSites(t, "sites touched while paused", tf.sitesIn(id, protocol.RolloutSiteWaiting), "s1", "s2", "s3")

	if _, err := tf.ResumeRollout(tf.ctx, id, "alice"); err != nil {
		t.Fatal(err)
	}
	tf.schedule()
	wantSites(t, "after resume", tf.sitesIn(id, protocol.RolloutSitePending), "s1")
	tf.runJob("s1", protocol.StateCommitted)
	tf.schedule()
	tf.runJob("s2", protocol.StateFailed)
	tf.schedule()
	ro = tf.rollout(id)
	if ro.State != protocol.RolloutPaused || ro.Failures != 2 {
		t.Fatalf("rollout %s with %d failures after a second failure, want paused with 2 (the count kept)", ro.State, ro.Failures)
	}
	wantSites(t, "untouched", tf.sitesIn(id, protocol.RolloutSiteWaiting), "s3")
	log, err := tf.Store.AuditLog(tf.ctx, store.AuditQuery{Actor: "alice", Limit: 10})
	if err != nil || len(log) != 1 || log[0].Action != "rollout.resume" || log[0].Object != rolloutName(id) {
		t.Fatalf("audit of alice: %+v, %v; want her resume", log, err)
	}
}

// TestRolloutFailuresThenCancel: two failures reach --max-failures 2 and
// pause the rollout; running jobs finish, pending ones stay until cancel
// ends them at once, and the rollout ends cancelled.
func TestRolloutFailuresThenCancel(t *testing.T) {
	tf := rolloutFleet(t, names("s", 6)...)
	id := tf.createRollout(protocol.RolloutRequest{Clients: []string{"acme"}, MaxParallel: 4, MaxFailures: "2"})
	tf.schedule()
	wantSites(t, "started", tf.sitesIn(id, protocol.RolloutSitePending), "s1", "s2", "s3", "s4")
	// s3's agent picks its job up and works on it.
	a := tf.checkin("s3", protocol.CheckinRequest{InstalledVersion: "1.0.0", State: protocol.StateIdle})
	tf.events("s3", a.JobID, 1, "downloading")
	tf.runJob("s1", protocol.StateFailed)
	tf.schedule()
	if ro := tf.rollout(id); ro.State != protocol.RolloutRunning {
		t.Fatalf("rollout %s after 1 failure of max 2, want running", ro.State)
	}
	wantSites(t, "s1's slot taken", tf.sitesIn(id, protocol.RolloutSitePending), "s2", "s4", "s5")
	tf.runJob("s2", protocol.StateRolledBack)
	tf.schedule()
	ro := tf.rollout(id)
	if ro.State != protocol.RolloutPaused || !strings.Contains(ro.PauseReason, "s1 (job") || !strings.Contains(ro.PauseReason, "s2 (job") {
		t.Fatalf("rollout %s (%q), want paused naming s1 and s2", ro.State, ro.PauseReason)
	}
	wantSites(t, "untouched", tf.sitesIn(id, protocol.RolloutSiteWaiting), "s6")

	if _, err := tf.CancelRollout(tf.ctx, id, "bob"); err != nil {
		t.Fatal(err)
	}
	ro = tf.rollout(id)
	if ro.State != protocol.RolloutCancelled {
		t.Fatalf("rollout %s after cancel, want cancelled at once", ro.State)
	}
	wantSites(t, "cancelled before they started", tf.sitesIn(id, protocol.RolloutSiteCancelled), "s6")
	wantSites(t, "still running", tf.sitesIn(id, protocol.RolloutSiteRunning), "s3")
	failed := tf.sitesIn(id, protocol.RolloutSiteFailed)
	wantSites(t, "failed (the jobs of s4 and s5 cancelled)", failed, "s1", "s2", "s4", "s5")
	for _, w := range ro.WaveDetail {
		for _, s := range w.Sites {
			if s.Site == "s4" && !strings.Contains(s.Reason, "cancelled: rollout 1 was cancelled by bob") {
				t.Errorf("s4: %q, want its job cancelled by the rollout's cancel", s.Reason)
			}
		}
	}
	tf.schedule()
	if _, err := tf.ResumeRollout(tf.ctx, id, "bob"); err == nil {
		t.Errorf("a cancelled rollout resumed")
	}
	tf.events("s3", a.JobID, 2, "committed")
	tf.schedule()
	if ro := tf.rollout(id); ro.State != protocol.RolloutCancelled {
		t.Errorf("rollout %s after its last job ended, want cancelled", ro.State)
	}
}

// TestRolloutPlansEachSite: a site on the version already (or a newer
// one) succeeds at once, a site needing two hops gets both (one job each, of the
// rollout), a drifted site fails with the planner's reason.
func TestRolloutPlansEachSite(t *testing.T) {
	tf := newTestFleet(t)
	tf.publish("acme-erp", "1.0.0", "")
	tf.publish("acme-erp", "1.1.0", ">= 1.0.0")
	tf.publish("acme-erp", "2.0.0", ">= 1.1.0")
	tf.enroll("done", "acme", "2.0.0", "0.9.0")
	tf.enroll("ahead", "acme", "2.0.1", "0.9.0")
	tf.enroll("far", "acme", "1.0.0", "0.9.0")
	tf.enroll("drifted", "acme", "1.1.0", "0.9.0")
	tf.checkin("drifted", protocol.CheckinRequest{InstalledVersion: "1.1.0", State: protocol.StateIdle, Drift: []string{"files/app.dll changed"}})
	id := tf.createRollout(protocol.RolloutRequest{Product: "acme-erp", Version: "2.0.0", Clients: []string{"acme"}, MaxFailures: "3"})
	tf.schedule()
	ro := tf.rollout(id)
	got := map[string]protocol.RolloutSite{}
	for _, s := range ro.WaveDetail[0].Sites {
		got[s.Site] = s
	}
	if s := got["done"]; s.Status != protocol.RolloutSiteSucceeded || s.JobID != "" {
		t.Errorf("done: %+v, want succeeded without a job", s)
	}
	if s := got["ahead"]; s.Status != protocol.RolloutSiteSucceeded || s.JobID != "" || s.Reason != "runs 2.0.1, newer than 2.0.0" {
		t.Errorf("ahead: %+v, want succeeded without a job (never downgraded)", s)
	}
	if s := got["drifted"]; s.Status != protocol.RolloutSiteFailed || !strings.Contains(s.Reason, "drifted") {
		t.Errorf("drifted: %+v, want failed, saying it drifted", s)
	}
	p, err := tf.History(tf.ctx, "far", "", MaxHistoryLimit)
	if err != nil {
		t.Fatal(err)
	}
	if ids(p.Jobs) != "acme-erp:1.1.0->2.0.0 acme-erp:1.0.0->1.1.0" {
		t.Errorf("far's jobs %s, want two hops", ids(p.Jobs))
	}
	if s := got["far"]; s.Status != protocol.RolloutSitePending || s.JobID != p.Jobs[0].ID {
		t.Errorf("far: %+v, want pending on its last hop %s", s, p.Jobs[0].ID)
	}
}

// TestRolloutRestart: a server restarted mid-rollout goes on where it
// was and never starts a site twice.
func TestRolloutRestart(t *testing.T) {
	path := storetest.Path(t)
	tf := newTestFleetOn(t, path)
	tf.publish("acme-erp", "1.0.0", "")
	tf.publish("acme-erp", "1.1.0", "")
	for _, s := range names("s", 5) {
		tf.enroll(s, "acme", "1.0.0", "0.9.0")
	}
	id := tf.createRollout(protocol.RolloutRequest{Clients: []string{"acme"}, MaxParallel: 2, Waves: []float64{40, 100}})
	tf.schedule()
	tf.runJob("s1", protocol.StateCommitted)
	tf.Store.Close() // the server stops (a crash loses nothing committed)

	tf2 := newTestFleetOn(t, path)
	tf2.schedule()
	tf2.schedule()
	wantSites(t, "after the restart", tf2.sitesIn(id, protocol.RolloutSitePending), "s2")
	tf2.runJob("s2", protocol.StateCommitted)
	for range 3 {
		tf2.schedule()
	}
	wantSites(t, "wave 2", tf2.sitesIn(id, protocol.RolloutSitePending), "s3", "s4")
	for _, s := range names("s", 5) {
		p, err := tf2.History(tf2.ctx, s, "", MaxHistoryLimit)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Jobs) > 1 {
			t.Errorf("site %s has %d jobs: started twice", s, len(p.Jobs))
		}
	}
}

// TestRolloutOverlapRefused: two rollouts of one product over one site
// are refused; once the first ends, the site may be in another.
func TestRolloutOverlapRefused(t *testing.T) {
	tf := rolloutFleet(t, "s1", "s2")
	id := tf.createRollout(protocol.RolloutRequest{Sites: []string{"s1"}})
	_, err := tf.CreateRollout(tf.ctx, protocol.RolloutRequest{Product: "acme-erp", Version: "1.1.0", Clients: []string{"acme"}}, "support")
	if fe, ok := fault.As(err); !ok || fe.Kind != fault.Conflict || !strings.Contains(fe.Msg, "site s1 is already in rollout 1 of acme-erp") {
		t.Fatalf("second rollout over s1: %v, want a conflict naming s1 and rollout 1", err)
	}
	if _, err := tf.CancelRollout(tf.ctx, id, "support"); err != nil {
		t.Fatal(err)
	}
	tf.createRollout(protocol.RolloutRequest{Clients: []string{"acme"}})
}

// TestRolloutWindowsHoldAndSoak: a site whose window is closed waits
// while others go ahead; --hold-between-waves pauses after each wave
// until someone resumes; the next wave waits for the soak time.
func TestRolloutWindowsHoldAndSoak(t *testing.T) {
	tf := rolloutFleet(t, "closed", "s1", "s2") // Monday 10:00 UTC
	if err := tf.Store.SetWindow(tf.ctx, tf.now(), store.ScopeSite, "closed", []string{"Mon 12:00-13:00"}, "UTC", store.Audit{Actor: "test", Action: "window.set"}); err != nil {
		t.Fatal(err)
	}
	id := tf.createRollout(protocol.RolloutRequest{Sites: []string{"closed", "s1", "s2"}, Waves: []float64{50, 100}, MaxParallel: 5,
		HoldBetweenWaves: true, SoakSeconds: 600})
	tf.schedule()
	wantSites(t, "started, the closed window waiting", tf.sitesIn(id, protocol.RolloutSitePending), "s1")
	tf.runJob("s1", protocol.StateCommitted)
	tf.schedule()
	if ro := tf.rollout(id); ro.State != protocol.RolloutRunning || ro.CurrentWave != 0 {
		t.Fatalf("rollout %s in wave %d while a site of wave 0 waits for its window", ro.State, ro.CurrentWave)
	}
	tf.advance(2 * time.Hour) // 12:00: the window opens
	tf.schedule()
	wantSites(t, "in its window", tf.sitesIn(id, protocol.RolloutSitePending), "closed")
	tf.runJob("closed", protocol.StateCommitted)
	tf.schedule()
	ro := tf.rollout(id)
	if ro.State != protocol.RolloutPaused || !strings.Contains(ro.PauseReason, "held between waves") || ro.CurrentWave != 1 {
		t.Fatalf("rollout %s (%q) in wave %d, want paused for approval before wave 1", ro.State, ro.PauseReason, ro.CurrentWave)
	}
	if _, err := tf.ResumeRollout(tf.ctx, id, "alice"); err != nil {
		t.Fatal(err)
	}
	tf.advance(5 * time.Minute)
	tf.schedule()
	wantSites(t, "wave 1 during the soak", tf.sitesIn(id, protocol.RolloutSiteWaiting), "s2")
	tf.advance(6 * time.Minute)
	tf.schedule()
	wantSites(t, "wave 1 after the soak", tf.sitesIn(id, protocol.RolloutSitePending), "s2")
}

// TestRolloutTimeoutIsAFailure: a site that never picks its job up
// within the job timeout fails it, and the rollout pauses.
func TestRolloutTimeoutIsAFailure(t *testing.T) {
	tf := rolloutFleet(t, "s1", "s2")
	id := tf.createRollout(protocol.RolloutRequest{Clients: []string{"acme"}, MaxParallel: 1})
	tf.schedule()
	tf.advance(testTimeout + time.Second)
	sweep(t, tf)
	tf.schedule()
	ro := tf.rollout(id)
	if ro.State != protocol.RolloutPaused || !strings.Contains(ro.PauseReason, "s1 (job") || !strings.Contains(ro.PauseReason, "timed out") {
		t.Fatalf("rollout %s (%q), want paused: s1 timed out", ro.State, ro.PauseReason)
	}
	wantSites(t, "untouched", tf.sitesIn(id, protocol.RolloutSiteWaiting), "s2")
}

// TestRolloutOverAChannel: --channel takes the sites of the product that
// follow the channel, and only those.
func TestRolloutOverAChannel(t *testing.T) {
	tf := rolloutFleet(t, "s1", "s2", "s3")
	tf.follow("s1", "lts", "")
	tf.follow("s3", "lts", "")
	tf.follow("s2", "beta", "")
	id := tf.createRollout(protocol.RolloutRequest{Channel: "lts"})
	wantSites(t, "rollout over lts", tf.sitesIn(id, protocol.RolloutSiteWaiting), "s1", "s3")
	tf.schedule()
	if got := tf.open("s2"); got != "" {
		t.Fatalf("s2 follows beta, not lts, and got job %s", got)
	}
	if tf.open("s1") == "" || tf.open("s3") == "" {
		t.Fatal("the followers of lts got no job")
	}
}

// TestRolloutRefusals: what create refuses, each with what to do.
func TestRolloutRefusals(t *testing.T) {
	tf := rolloutFleet(t, "s1")
	tf.publish("other", "1.0.0", "")
	tests := []struct {
		name string
		req  protocol.RolloutRequest
		want string
	}{
		{"no sites", protocol.RolloutRequest{}, "exactly one of channel, clients or sites"},
		{"two kinds", protocol.RolloutRequest{Clients: []string{"acme"}, Sites: []string{"s1"}}, "exactly one of"},
		{"channel nobody follows", protocol.RolloutRequest{Channel: "stable"}, "no site of acme-erp follows channel stable"},
		{"not published", protocol.RolloutRequest{Version: "9.9.9", Sites: []string{"s1"}}, "is not published"},
		{"bad waves", protocol.RolloutRequest{Sites: []string{"s1"}, Waves: []float64{50}}, "never upgrade"},
		{"bad max failures", protocol.RolloutRequest{Sites: []string{"s1"}, MaxFailures: "0"}, "at least 1"},
		{"unknown client", protocol.RolloutRequest{Clients: []string{"nobody"}}, "client nobody has no enrolled site"},
		{"unknown site", protocol.RolloutRequest{Sites: []string{"nowhere"}}, "site nowhere is not enrolled"},
		{"unknown canary", protocol.RolloutRequest{Sites: []string{"s1"}, Canary: []string{"nowhere"}}, "site nowhere is not enrolled"},
		{"other product", protocol.RolloutRequest{Product: "other", Version: "1.0.0", Sites: []string{"s1"}}, "site s1 runs acme-erp, not other"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.req.Product == "" {
				tt.req.Product = "acme-erp"
			}
			if tt.req.Version == "" {
				tt.req.Version = "1.1.0"
			}
			_, err := tf.CreateRollout(tf.ctx, tt.req, "support")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("create %+v: %v, want an error with %q", tt.req, err, tt.want)
			}
		})
	}
}

// TestRolloutStartsAWaveInBatches: a wave larger than one start
// transaction starts whole in one pass, a batch of sites per transaction;
// a site whose agent has a job of the product in hands waits for it to
// end (its batch starts without it), then starts.
func TestRolloutStartsAWaveInBatches(t *testing.T) {
	defer func(r, s int) { readBatch, startBatch = r, s }(readBatch, startBatch)
	readBatch, startBatch = 2, 3 // transactions of 4 sites
	all := names("s", 10)
	tf := rolloutFleet(t, all...)
	busy := tf.upgrade(protocol.UpgradeRequest{Site: "s4", To: "1.1.0"})
	if a := tf.checkin("s4", protocol.CheckinRequest{InstalledVersion: "1.0.0", AgentVersion: "0.9.0", State: protocol.StateIdle}); a == nil || a.JobID != busy[0].ID {
		t.Fatalf("s4 was handed %+v, want its upgrade %s", a, busy[0].ID)
	}
	id := tf.createRollout(protocol.RolloutRequest{Clients: []string{"acme"}, Waves: []float64{100}, MaxParallel: 100})
	tf.schedule()
	wantSites(t, "started in one pass", tf.sitesIn(id, protocol.RolloutSitePending), "s1", "s10", "s2", "s3", "s5", "s6", "s7", "s8", "s9")
	wantSites(t, "waiting for its job", tf.sitesIn(id, protocol.RolloutSiteWaiting), "s4")
	entries, err := tf.Store.AuditLog(tf.ctx, store.AuditQuery{Actor: "rollout " + strconv.FormatInt(id, 10), Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	starts := 0
	for _, a := range entries {
		if a.Action == "rollout.start" {
			starts++
		}
	}
	if starts < 3 {
		t.Errorf("%d rollout.start audit entries, want one per transaction of at most 4 sites (3)", starts)
	}
	tf.events("s4", busy[0].ID, 1, "committed")
	tf.schedule()
	if got := tf.sitesIn(id, protocol.RolloutSiteWaiting); len(got) != 0 {
		t.Errorf("waiting after s4's job ended: %v, want none", got)
	}
}

// TestRolloutSchedulerReadsAheadOfTheFleet: the scheduler's reads (the
// rollout's sites, the sites it plans) do not wait for the read pool the
// agents' check-ins fill: with every connection of that pool taken, a
// pass still starts the wave. Before, at 100,000 agents connecting, its
// first read of the rollout's sites waited 39 s behind theirs.
func TestRolloutSchedulerReadsAheadOfTheFleet(t *testing.T) {
	tf := rolloutFleet(t, "s1", "s2")
	id := tf.createRollout(protocol.RolloutRequest{Sites: []string{"s1", "s2"}, Waves: []float64{100}})
	db := tf.Store.DB()
	var conns []*sql.Conn
	for range db.Stats().MaxOpenConnections {
		conn, err := db.Conn(tf.ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, conn)
	}
	// A bound, so that a pass waiting for the pool fails the test
	// rather than hanging it.
	ctx, cancel := context.WithTimeout(tf.ctx, 30*time.Second)
	defer cancel()
	if _, err := tf.ScheduleRollouts(ctx); err != nil {
		t.Fatalf("a pass with the read pool taken: %v", err)
	}
	for _, c := range conns {
		c.Close()
	}
	wantSites(t, "pending after the pass", tf.sitesIn(id, protocol.RolloutSitePending), "s1", "s2")
}
