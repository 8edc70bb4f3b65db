//go:build e2e && unix

package testenv

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
)

// rolloutSites starts n sites of client acme (acme-1 ...), each with a
// real agent and sample app, installed on 1.0.0.
func rolloutSites(t *testing.T, env *Env, n int) []*Site {
	t.Helper()
	var sites []*Site
	for i := range n {
		sites = append(sites, env.NewSite(t, fmt.Sprintf("acme-%d", i+1), "acme"))
	}
	env.MustCLI(t, "upgrade", "--client", "acme", "--to", "1.0.0", "--now")
	for _, s := range sites {
		s.AwaitHealthy(t, "1.0.0")
	}
	return sites
}

func (e *Env) rollout(t *testing.T, id string) protocol.Rollout {
	t.Helper()
	var ro protocol.Rollout
	if err := json.Unmarshal([]byte(e.MustCLI(t, "rollout", "show", id, "--json")), &ro); err != nil {
		t.Fatal(err)
	}
	return ro
}

func (e *Env) awaitRollout(t *testing.T, id, state string) protocol.Rollout {
	t.Helper()
	var ro protocol.Rollout
	Await(t, "rollout "+id+" "+state, func() bool { ro = e.rollout(t, id); return ro.State == state })
	return ro
}

// jobsTo returns the site's jobs to version, newest first.
func jobsTo(t *testing.T, s *Site, version string) []protocol.Job {
	var out []protocol.Job
	for _, j := range s.History(t) {
		if j.To == version {
			out = append(out, j)
		}
	}
	return out
}

// TestRolloutWavesE2E: a rollout over 8 sites with a canary and two
// waves, max parallel 2: the canary ends before any other site starts,
// never more than 2 sites upgrade at once (from the events' timestamps),
// every site ends on the release, each upgraded once.
func TestRolloutWavesE2E(t *testing.T) {
	t.Parallel()
	env := New(t)
	env.Publish(t, "1.0.0", Healthy)
	env.Publish(t, "1.1.0", Healthy)
	sites := rolloutSites(t, env, 8)
	id := strings.TrimSpace(env.MustCLI(t, "rollout", "create", "--product", Product, "--version", "1.1.0", "--client", "acme",
		"--canary", "acme-8", "--waves", "50%,100%", "--max-parallel", "2"))
	ro := env.awaitRollout(t, id, protocol.RolloutCompleted)
	if ro.Failures != 0 || ro.Started != 8 || len(ro.WaveDetail) != 3 {
		t.Fatalf("rollout %+v, want 8 started in 3 waves, no failure", ro)
	}
	type span struct{ from, to time.Time }
	var spans []span
	var canary span
	for _, s := range sites {
		s.AwaitHealthy(t, "1.1.0")
		jobs := jobsTo(t, s, "1.1.0")
		if len(jobs) != 1 || jobs[0].Result != protocol.ResultSucceeded || len(jobs[0].Events) == 0 {
			t.Fatalf("site %s: %d jobs to 1.1.0 (%+v), want one that succeeded", s.Name, len(jobs), jobs)
		}
		ev := jobs[0].Events
		sp := span{ev[0].At, ev[len(ev)-1].At}
		if s.Name == "acme-8" {
			canary = sp
		} else {
			spans = append(spans, sp)
		}
	}
	for _, sp := range spans {
		if !sp.from.After(canary.to) {
			t.Errorf("a site started at %s, before the canary ended at %s", sp.from, canary.to)
		}
	}
	most := 0
	for _, a := range spans {
		n := 0
		for _, b := range spans {
			if !b.from.After(a.from) && !b.to.Before(a.from) {
				n++
			}
		}
		most = max(most, n)
	}
	if most > 2 {
		t.Errorf("%d sites upgraded at once, want at most 2", most)
	}
	t.Logf("at most %d sites upgraded at once", most)
}

// TestRolloutAndonCordE2E: a bad release. The canary fails (it rolls
// back) and the rollout pauses with no other site touched. A second
// rollout with --max-failures 2: two sites fail, the rollout pauses, the
// rest untouched; cancel ends the pending job of an offline site at once
// and the rollout is cancelled.
func TestRolloutAndonCordE2E(t *testing.T) {
	t.Parallel()
	env := New(t)
	env.Publish(t, "1.0.0", Healthy)
	env.Publish(t, "1.1.0", Unhealthy)
	sites := rolloutSites(t, env, 5)

	id := strings.TrimSpace(env.MustCLI(t, "rollout", "create", "--product", Product, "--version", "1.1.0", "--client", "acme", "--canary", "acme-5"))
	ro := env.awaitRollout(t, id, protocol.RolloutPaused)
	if !slices.Equal(ro.FailedSites, []string{"acme-5"}) || !strings.Contains(ro.PauseReason, "acme-5 (job") {
		t.Fatalf("paused: failed %v, reason %q; want the canary named", ro.FailedSites, ro.PauseReason)
	}
	sites[4].AwaitHealthy(t, "1.0.0")
	for _, s := range sites[:4] {
		if n := len(jobsTo(t, s, "1.1.0")); n != 0 {
			t.Fatalf("site %s got %d jobs while the canary failed", s.Name, n)
		}
	}
	env.MustCLI(t, "rollout", "cancel", id)

	// Four sites, max parallel 2, max failures 2; acme-1 is offline: its
	// job waits, acme-2 fails, acme-3 takes its slot and fails too.
	sites[0].StopAgent(t)
	id = strings.TrimSpace(env.MustCLI(t, "rollout", "create", "--product", Product, "--version", "1.1.0", "--site", "acme-1,acme-2,acme-3,acme-4",
		"--max-parallel", "2", "--max-failures", "2"))
	ro = env.awaitRollout(t, id, protocol.RolloutPaused)
	if !slices.Equal(ro.FailedSites, []string{"acme-2", "acme-3"}) {
		t.Fatalf("paused with failed sites %v, want acme-2 and acme-3", ro.FailedSites)
	}
	if n := len(jobsTo(t, sites[3], "1.1.0")); n != 0 {
		t.Fatalf("acme-4 got %d jobs, want untouched", n)
	}
	if j := jobsTo(t, sites[0], "1.1.0"); len(j) != 1 || j[0].Result != protocol.ResultPending {
		t.Fatalf("offline acme-1: %+v, want its job pending", j)
	}
	env.MustCLI(t, "rollout", "cancel", id)
	ro = env.rollout(t, id)
	if ro.State != protocol.RolloutCancelled {
		t.Fatalf("after cancel: %s, want cancelled at once", ro.State)
	}
	if j := jobsTo(t, sites[0], "1.1.0"); len(j) != 1 || j[0].Result != protocol.ResultFailed || !strings.HasPrefix(j[0].Reason, "cancelled: rollout "+id) {
		t.Fatalf("acme-1 after cancel: %+v, want its job cancelled", j)
	}
	sites[0].StartAgent(t)
	Await(t, "acme-1 back", func() bool {
		st := sites[0].Info(t)
		return st.LastSeen != nil && time.Since(*st.LastSeen) < 5*time.Second
	})
	for _, s := range sites[:4] {
		s.AwaitHealthy(t, "1.0.0")
	}
}

// TestRolloutServerKilledE2E: the server is killed (SIGKILL) in the
// middle of a rollout and started again: the rollout completes, and no
// site is upgraded twice.
func TestRolloutServerKilledE2E(t *testing.T) {
	t.Parallel()
	env := New(t)
	env.Publish(t, "1.0.0", Healthy)
	env.PublishFiles(t, "1.1.0", map[string]string{"startup_delay": "1s"})
	sites := rolloutSites(t, env, 4)
	id := strings.TrimSpace(env.MustCLI(t, "rollout", "create", "--product", Product, "--version", "1.1.0", "--client", "acme", "--max-parallel", "1"))
	Await(t, "the first site upgraded", func() bool {
		return env.rollout(t, id).WaveDetail[0].Sites[0].Status == protocol.RolloutSiteSucceeded
	})
	env.StopServer(t)
	env.StartServer(t)
	ro := env.awaitRollout(t, id, protocol.RolloutCompleted)
	if ro.Failures != 0 {
		t.Fatalf("rollout completed with failures %v", ro.FailedSites)
	}
	for _, s := range sites {
		s.AwaitHealthy(t, "1.1.0")
		if jobs := jobsTo(t, s, "1.1.0"); len(jobs) != 1 || jobs[0].Result != protocol.ResultSucceeded {
			t.Errorf("site %s: %d jobs to 1.1.0 (%+v), want one", s.Name, len(jobs), jobs)
		}
	}
}
