//go:build e2e && unix

package testenv

import (
	"slices"
	"strings"
	"testing"

	"github.com/dropless/dropless/pkg/protocol"
)

var fullUpgrade = []string{"downloading", "verified", "preflight", "stopping", "staging", "switching", "starting", "health_check", "committed"}

func eventStates(j protocol.Job) []string {
	var out []string
	for _, e := range j.Events {
		out = append(out, e.State)
	}
	return out
}

// checkSeq: each event once, in order, no gaps.
func checkSeq(t *testing.T, j protocol.Job) {
	t.Helper()
	for i, e := range j.Events {
		if e.Seq != int64(i+1) {
			t.Fatalf("job %s events have seq %d at position %d: %v", j.ID, e.Seq, i+1, eventStates(j))
		}
	}
}

// TestFreshInstallAndUpgrade: a fresh site installs the assigned version,
// then upgrades, and the server shows the version that really runs.
func TestFreshInstallAndUpgrade(t *testing.T) {
	t.Parallel()
	env := New(t)
	env.Publish(t, "1.0.0", Healthy)
	env.Publish(t, "1.1.0", Healthy, "--upgrade-from", ">= 1.0, < 1.1")
	site := env.NewSite(t, "acme-prod", "acme")
	if v := site.Info(t).InstalledVersion; v != "" {
		t.Fatalf("fresh site reports %q installed", v)
	}

	site.Upgrade(t, "1.0.0")
	site.AwaitHealthy(t, "1.0.0")
	j := site.AwaitJob(t)
	if j.Result != protocol.ResultSucceeded || j.From != "" || j.To != "1.0.0" {
		t.Fatalf("install job: %+v", j)
	}
	checkSeq(t, j)

	site.Upgrade(t, "1.1.0")
	site.AwaitHealthy(t, "1.1.0")
	j = site.AwaitJob(t)
	if j.Result != protocol.ResultSucceeded || j.From != "1.0.0" {
		t.Fatalf("upgrade job: %+v", j)
	}
	checkSeq(t, j)
	if got := eventStates(j); !slices.Equal(got, fullUpgrade) {
		t.Errorf("upgrade events %v, want %v", got, fullUpgrade)
	}
	if st := site.Info(t); st.InstalledVersion != "1.1.0" || st.TargetVersion != "1.1.0" || st.State != protocol.StateIdle {
		t.Errorf("site after upgrade: %+v", st)
	}
}

// TestBadReleaseRolledBack: a release whose health check fails is rolled
// back by itself and the old version answers again.
func TestBadReleaseRolledBack(t *testing.T) {
	t.Parallel()
	env := New(t)
	env.Publish(t, "1.0.0", Healthy)
	env.Publish(t, "1.2.0", Unhealthy)
	site := env.NewSite(t, "acme-prod", "acme")
	site.Upgrade(t, "1.0.0")
	site.AwaitHealthy(t, "1.0.0")
	site.AwaitJob(t)

	site.Upgrade(t, "1.2.0")
	j := site.AwaitJob(t)
	if j.Result != protocol.ResultRolledBack {
		t.Fatalf("bad release: %s (%s), events %v", j.Result, j.Reason, eventStates(j))
	}
	// The reason comes with the events, which may trail the check-in that
	// ended the job.
	Await(t, "the job's reason", func() bool {
		j = site.History(t)[0]
		return strings.Contains(j.Reason, "health check failed")
	})
	checkSeq(t, j)
	site.AwaitHealthy(t, "1.0.0")
	if st := site.Info(t); st.InstalledVersion != "1.0.0" {
		t.Errorf("installed %q after rollback", st.InstalledVersion)
	}
}

func fmtEvents(j protocol.Job) string {
	var b strings.Builder
	for _, e := range j.Events {
		b.WriteString(e.State + ": " + e.Message + "; ")
	}
	return b.String()
}

// TestServerDownDuringJob: the server dies mid-job; the agent finishes the
// job, and its events reach the server, each once, when it comes back.
func TestServerDownDuringJob(t *testing.T) {
	t.Parallel()
	env := New(t)
	env.Publish(t, "1.0.0", Healthy)
	env.PublishFiles(t, "1.1.0", map[string]string{"startup_delay": "3s"})
	site := env.NewSite(t, "acme-prod", "acme")
	site.Upgrade(t, "1.0.0")
	site.AwaitHealthy(t, "1.0.0")
	site.AwaitJob(t)

	site.Upgrade(t, "1.1.0")
	Await(t, "the job to reach starting", func() bool {
		h := site.History(t)
		return slices.Contains(eventStates(h[0]), "starting")
	})
	env.StopServer(t)
	// The agent finishes on its own: the new version comes up.
	Await(t, "1.1.0 healthy with the server down", func() bool {
		v, err := site.AppVersion()
		return err == nil && v == "1.1.0"
	})
	env.StartServer(t)
	j := site.AwaitJob(t)
	if j.Result != protocol.ResultSucceeded {
		t.Fatalf("job: %s %s", j.Result, j.Reason)
	}
	Await(t, "all events delivered", func() bool {
		j = site.History(t)[0]
		return len(j.Events) == len(fullUpgrade)
	})
	checkSeq(t, j)
	if got := eventStates(j); !slices.Equal(got, fullUpgrade) {
		t.Errorf("events %v", got)
	}
	site.AwaitHealthy(t, "1.1.0")
}

// TestAgentRestartWhileIdle: restarting the agent leaves the app alone and
// starts no job.
func TestAgentRestartWhileIdle(t *testing.T) {
	t.Parallel()
	env := New(t)
	env.Publish(t, "1.0.0", Healthy)
	site := env.NewSite(t, "acme-prod", "acme")
	site.Upgrade(t, "1.0.0")
	site.AwaitHealthy(t, "1.0.0")
	site.AwaitJob(t)

	site.StopAgent(t)
	if v, err := site.AppVersion(); err != nil || v != "1.0.0" {
		t.Fatalf("app after the agent stopped: %q %v", v, err)
	}
	before := site.Info(t).LastSeen
	site.StartAgent(t)
	Await(t, "agent checked in again", func() bool {
		st := site.Info(t)
		return st.LastSeen != nil && st.LastSeen.After(*before)
	})
	if h := site.History(t); len(h) != 1 {
		t.Errorf("restart created jobs: %d", len(h))
	}
	if st := site.Info(t); st.InstalledVersion != "1.0.0" || st.State != protocol.StateIdle {
		t.Errorf("after restart: %+v", st)
	}
}
