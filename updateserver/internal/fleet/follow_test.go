package fleet

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/store"
)

// publishOn publishes acme-erp's version on channels.
func (tf *testFleet) publishOn(version, upgradeFrom string, channels ...string) {
	tf.t.Helper()
	r := protocol.Release{Product: "acme-erp", Version: version, Target: "acme-erp/acme-erp-" + version + ".tar.gz", SHA256: "00", Length: 1,
		UpgradeFrom: upgradeFrom, Channels: channels, PublishedAt: tf.now(), PublishedBy: "test"}
	if err := tf.Store.PublishRelease(tf.ctx, store.Publish{Release: r, Audit: store.Audit{Actor: "test", Action: "release.publish"}}); err != nil {
		tf.t.Fatal(err)
	}
}

func (tf *testFleet) yank(version string) {
	tf.t.Helper()
	r, err := tf.Store.GetRelease(tf.ctx, "acme-erp", version)
	if err != nil {
		tf.t.Fatal(err)
	}
	if _, err := tf.Store.Yank(tf.ctx, tf.now(), r, "bad", store.Audit{Actor: "test", Action: "release.yank"}); err != nil {
		tf.t.Fatal(err)
	}
}

func (tf *testFleet) follow(site, channel, pin string) []protocol.Job {
	tf.t.Helper()
	resp, err := tf.Follow(tf.ctx, protocol.FollowRequest{Site: site, Channel: channel, Pin: pin}, "support")
	if err != nil {
		tf.t.Fatalf("follow %s %s %q: %v", site, channel, pin, err)
	}
	return resp.Jobs
}

// pass runs a follow pass over every follower, as a release change does.
func (tf *testFleet) pass() []protocol.Job {
	tf.t.Helper()
	jobs, err := tf.followPass(tf.ctx, "acme-erp", nil)
	if err != nil {
		tf.t.Fatal(err)
	}
	return jobs
}

// open returns the site's open jobs, oldest first, as "from->to".
func (tf *testFleet) open(site string) string {
	tf.t.Helper()
	p, err := tf.History(tf.ctx, site, "", MaxHistoryLimit)
	if err != nil {
		tf.t.Fatal(err)
	}
	var out []string
	for i := len(p.Jobs) - 1; i >= 0; i-- {
		if j := p.Jobs[i]; j.Result == protocol.ResultPending || j.Result == protocol.ResultRunning {
			out = append(out, j.From+"->"+j.To)
		}
	}
	return strings.Join(out, " ")
}

// TestFollowChannelWithPin: a follower gets a job to the newest release
// of its channel that its pin admits ("~> 3.2": the 3.2 line only),
// through the hops its path needs; one on another channel gets nothing; a
// newer release replaces a pending job; yanking the release it waits
// for re-plans or cancels it; a job that rolled back is not retried; a
// job support made goes first; unfollowing cancels what following made.
func TestFollowChannelWithPin(t *testing.T) {
	tf := newTestFleet(t)
	tf.publishOn("3.1.0", "", "stable")
	tf.publishOn("3.2.0", ">= 3.1, < 3.2", "stable")
	tf.publishOn("3.3.0", ">= 3.2, < 3.3", "stable")
	tf.publishOn("4.0.0", ">= 3.3, < 4.0", "beta")
	for _, s := range []string{"pinned", "free", "beta", "manual"} {
		tf.enroll(s, "acme", "3.1.0", "1.0.0")
	}

	if jobs := tf.follow("pinned", "stable", "~> 3.2"); ids(jobs) != "acme-erp:3.1.0->3.2.0" {
		t.Fatalf("pinned ~> 3.2 got %s, want one job to 3.2.0", ids(jobs))
	}
	if jobs := tf.follow("free", "stable", ""); ids(jobs) != "acme-erp:3.1.0->3.2.0 acme-erp:3.2.0->3.3.0" {
		t.Fatalf("unpinned got %s, want the two hops to 3.3.0", ids(jobs))
	}
	if jobs := tf.follow("beta", "rc", ""); len(jobs) != 0 {
		t.Fatalf("a channel with no release gave %s", ids(jobs))
	}
	if jobs := tf.pass(); len(jobs) != 0 {
		t.Fatalf("a second pass with nothing new made %s", ids(jobs))
	}
	if names, err := tf.Store.SitesFollowing(tf.ctx, "acme-erp", "stable"); err != nil || strings.Join(names, ",") != "free,pinned" {
		t.Fatalf("SitesFollowing(stable) = %v %v, want free,pinned", names, err)
	}
	if st, _ := tf.Site(tf.ctx, "pinned"); st.Channel != "stable" || st.Pin != "~> 3.2" {
		t.Fatalf("pinned shows channel %q pin %q", st.Channel, st.Pin)
	}

	// A hot fix on 3.2: the pinned site's pending job is replaced by the
	// path to it; the unpinned one stays on its way to 3.3.0.
	tf.publishOn("3.2.1", ">= 3.2.0, < 3.2.1", "stable")
	tf.pass()
	if got := tf.open("pinned"); got != "3.1.0->3.2.0 3.2.0->3.2.1" {
		t.Fatalf("pinned after 3.2.1: open jobs %q, want the hops to 3.2.1", got)
	}
	if got := tf.open("free"); got != "3.1.0->3.2.0 3.2.0->3.3.0" {
		t.Fatalf("free after 3.2.1: open jobs %q, want unchanged", got)
	}

	// Yanking the hot fix re-plans to 3.2.0; yanking 3.2.0 too leaves
	// nothing admitted: following's jobs are cancelled.
	tf.yank("3.2.1")
	tf.pass()
	if got := tf.open("pinned"); got != "3.1.0->3.2.0" {
		t.Fatalf("pinned after yanking 3.2.1: open jobs %q, want 3.1.0->3.2.0", got)
	}
	tf.yank("3.2.0")
	tf.pass()
	if got := tf.open("pinned"); got != "" {
		t.Fatalf("pinned with nothing admitted: open jobs %q, want none", got)
	}
	p, _ := tf.History(tf.ctx, "pinned", "", 1)
	if j := p.Jobs[0]; j.Result != protocol.ResultFailed || !strings.HasPrefix(j.Reason, reasonFollowCancel) {
		t.Fatalf("the cancelled job: %s %q", j.Result, j.Reason)
	}
	// free's jobs to 3.3.0 run through the yanked 3.2.0, and no other
	// path is left (3.3.0 upgrades from >= 3.2 only): they are cancelled,
	// saying why.
	if got := tf.open("free"); got != "" {
		t.Fatalf("free with its path through a yanked release: open jobs %q, want none", got)
	}
	p, _ = tf.History(tf.ctx, "free", "", 1)
	if j := p.Jobs[0]; j.Result != protocol.ResultFailed || !strings.Contains(j.Reason, "no upgrade path") {
		t.Fatalf("free's cancelled job: %s %q, want the missing path named", j.Result, j.Reason)
	}

	// A job that rolled back is not tried again.
	tf.publishOn("3.2.2", ">= 3.1, < 3.2.2", "stable")
	tf.pass()
	a := tf.checkin("pinned", protocol.CheckinRequest{InstalledVersion: "3.1.0", State: protocol.StateIdle})
	if a == nil || a.Version != "3.2.2" {
		t.Fatalf("pinned's assignment %+v, want 3.2.2", a)
	}
	tf.events("pinned", a.JobID, 1, "downloading", "stopping", "rolling_back: health check failed", "rolled_back")
	if jobs := tf.pass(); len(jobs) != 0 {
		t.Fatalf("after a rollback the pass made %s, want no retry", ids(jobs))
	}

	// Support's own job goes first.
	tf.upgrade(protocol.UpgradeRequest{Site: "manual", To: "3.2.2"})
	tf.follow("manual", "stable", "")
	if got := tf.open("manual"); got != "3.1.0->3.2.2" {
		t.Fatalf("manual: open jobs %q, want support's job alone", got)
	}

	// A release with a path for free: free alone gets it (pinned rolled
	// back on 3.2.2 and its pin refuses 3.3.1; manual has support's job).
	tf.publishOn("3.3.1", ">= 3.1, < 3.3.1", "stable")
	if jobs := tf.pass(); ids(jobs) != "acme-erp:3.1.0->3.3.1" {
		t.Fatalf("after 3.3.1 the pass made %s, want free's job alone", ids(jobs))
	}

	// Unfollowing cancels the pending jobs following made.
	if _, err := tf.Unfollow(tf.ctx, "free", "", "support"); err != nil {
		t.Fatal(err)
	}
	if got := tf.open("free"); got != "" {
		t.Fatalf("free after unfollow: open jobs %q, want none", got)
	}
	if st, _ := tf.Site(tf.ctx, "free"); st.Channel != "" || st.Pin != "" {
		t.Fatalf("free after unfollow shows channel %q pin %q", st.Channel, st.Pin)
	}
	entries, err := tf.Store.AuditLog(tf.ctx, store.AuditQuery{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, e := range entries {
		actions = append(actions, e.Action)
	}
	for _, want := range []string{"sites.follow", "sites.unfollow", "follow.upgrade"} {
		if !strings.Contains(strings.Join(actions, " "), want) {
			t.Errorf("audit lacks %s: %v", want, actions)
		}
	}

	// Bad input is refused, saying what to do.
	for _, req := range []protocol.FollowRequest{
		{Site: "free", Channel: "Stable!"},
		{Site: "free", Channel: "stable", Pin: "about 3"},
		{Site: "free", Client: "acme", Channel: "stable"},
		{Site: "nowhere", Channel: "stable"},
	} {
		if _, err := tf.Follow(tf.ctx, req, "support"); err == nil {
			t.Errorf("follow %+v: accepted", req)
		}
	}
}

// TestFollowAfterAJobBeforeTheCheckin: a job that succeeded by its
// events, before the agent's next check-in reports the new version, is
// not followed by a second job to the same version.
func TestFollowAfterAJobBeforeTheCheckin(t *testing.T) {
	tf := newTestFleet(t)
	tf.publishOn("1.0.0", "", "stable")
	tf.publishOn("1.1.0", "", "stable")
	tf.enroll("a", "acme", "1.0.0", "1.0.0")
	tf.follow("a", "stable", "")
	asg := tf.checkin("a", protocol.CheckinRequest{InstalledVersion: "1.0.0", State: protocol.StateIdle})
	tf.advance(time.Second)
	tf.events("a", asg.JobID, 1, "stopping", "committed")
	if jobs := tf.pass(); len(jobs) != 0 {
		t.Fatalf("the pass after the job made %s, want nothing: the site runs 1.1.0", ids(jobs))
	}
}

// TestFollowPassWithAPickedUpJob: a newer release reaches every follower
// in one transaction, except one whose agent has picked its job up: that
// one keeps it (the others are not held back), and follows once it ends.
func TestFollowPassWithAPickedUpJob(t *testing.T) {
	tf := newTestFleet(t)
	tf.publishOn("1.0.0", "", "stable")
	tf.publishOn("1.1.0", "", "stable")
	for _, s := range []string{"a", "b", "c"} {
		tf.enroll(s, "acme", "1.0.0", "1.0.0")
		tf.follow(s, "stable", "")
	}
	asg := tf.checkin("a", protocol.CheckinRequest{InstalledVersion: "1.0.0", State: protocol.StateIdle}) // picked up, not started
	tf.publishOn("1.2.0", "", "stable")
	if jobs := tf.pass(); ids(jobs) != "acme-erp:1.0.0->1.2.0 acme-erp:1.0.0->1.2.0" {
		t.Fatalf("the pass made %s, want b's and c's jobs to 1.2.0", ids(jobs))
	}
	if got := tf.open("a"); got != "1.0.0->1.1.0" {
		t.Fatalf("a: open jobs %q, want its picked-up job alone", got)
	}
	tf.events("a", asg.JobID, 1, "stopping", "committed")
	tf.checkin("a", protocol.CheckinRequest{InstalledVersion: "1.1.0", State: protocol.StateIdle})
	if jobs := tf.pass(); ids(jobs) != "acme-erp:1.1.0->1.2.0" {
		t.Fatalf("after a's job the pass made %s, want a's job to 1.2.0", ids(jobs))
	}
}

// TestFollowerWakesOnReleaseChange: the follower goroutine catches up at
// start and reacts to a release change without polling.
func TestFollowerWakesOnReleaseChange(t *testing.T) {
	tf := newTestFleet(t)
	tf.publishOn("1.0.0", "", "stable")
	tf.enroll("a", "acme", "1.0.0", "1.0.0")
	tf.enroll("b", "acme", "1.0.0", "1.0.0")
	tf.follow("a", "stable", "")
	// Published while "the server was down": no signal, only the catch-up.
	tf.publishOn("1.1.0", "", "stable")
	ctx, cancel := context.WithCancel(tf.ctx)
	done := make(chan struct{})
	go func() { defer close(done); tf.RunFollower(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	await(t, "a's job to 1.1.0 from the catch-up", func() bool { return tf.open("a") == "1.0.0->1.1.0" })

	if err := tf.Store.SetFollow(tf.ctx, tf.now(), []string{"b"}, "stable", "", store.Audit{Actor: "t", Action: "sites.follow"}); err != nil {
		t.Fatal(err)
	}
	tf.publishOn("1.2.0", "", "stable")
	tf.ReleaseChanged("acme-erp")
	await(t, "both sites' jobs to 1.2.0", func() bool { return tf.open("a") == "1.0.0->1.2.0" && tf.open("b") == "1.0.0->1.2.0" })
}

func await(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached in 30s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestDowntime: from the first stopping event to committed or
// rolled_back; 0 when the app was never stopped; unknown otherwise.
func TestDowntime(t *testing.T) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ev := func(state string, ms int) protocol.Event {
		return protocol.Event{State: state, At: at.Add(time.Duration(ms) * time.Millisecond)}
	}
	tests := []struct {
		name    string
		result  string
		events  []protocol.Event
		dropped int
		want    int64 // -1: unknown
	}{
		{"committed", protocol.ResultSucceeded, []protocol.Event{ev("downloading", 0), ev("stopping", 100), ev("starting", 900), ev("health_check", 1000), ev("committed", 2600)}, 0, 2500},
		{"rolled back", protocol.ResultRolledBack, []protocol.Event{ev("stopping", 0), ev("rolling_back", 500), ev("rolled_back", 1200)}, 0, 1200},
		{"failed in preflight", protocol.ResultFailed, []protocol.Event{ev("downloading", 0), ev("failed", 10)}, 0, 0},
		{"failed rollback", protocol.ResultFailed, []protocol.Event{ev("stopping", 0), ev("rolling_back", 500), ev("failed", 900)}, 0, -1},
		{"still running", protocol.ResultRunning, []protocol.Event{ev("stopping", 0)}, 0, -1},
		{"stopping dropped by the cap", protocol.ResultSucceeded, []protocol.Event{ev("downloading", 0), ev("committed", 900)}, 600, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Downtime(protocol.Job{Result: tt.result, Events: tt.events, EventsDropped: tt.dropped})
			switch {
			case tt.want < 0 && got != nil:
				t.Errorf("downtime %d ms, want unknown", *got)
			case tt.want >= 0 && (got == nil || *got != tt.want):
				t.Errorf("downtime %v, want %d ms", got, tt.want)
			}
		})
	}
}
