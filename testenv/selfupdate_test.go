//go:build e2e && unix

package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/dropless/dropless/pkg/protocol"
)

// The agent upgrades itself: real builds of the agent with different
// versions (and test-only broken builds, -tags failstart / hangstart),
// published as releases of product updateagent, swapped in place of the
// running agent's own executable.

var (
	agentBuildsMu sync.Mutex
	agentBuilds   = map[string]string{}
)

// buildAgent builds the agent stamped with version (and build tags), once
// per test binary, and returns its path.
func buildAgent(t *testing.T, version string, tags ...string) string {
	t.Helper()
	agentBuildsMu.Lock()
	defer agentBuildsMu.Unlock()
	key := version + "+" + strings.Join(tags, ",")
	if p, ok := agentBuilds[key]; ok {
		return p
	}
	dir := filepath.Join(Build(t).Dir, "agents", key)
	os.MkdirAll(dir, 0o755)
	out := filepath.Join(dir, "updateagent")
	args := []string{"build", "-o", out, "-ldflags", "-X github.com/dropless/dropless/pkg/buildinfo.Version=" + version}
	if len(tags) > 0 {
		args = append(args, "-tags", strings.Join(tags, ","))
	}
	if b, err := exec.Command("go", append(args, "github.com/dropless/dropless/agent/cmd/updateagent")...).CombinedOutput(); err != nil {
		t.Fatalf("build agent %s: %v\n%s", key, err, b)
	}
	agentBuilds[key] = out
	return out
}

// publishAgent publishes bin as release version of product updateagent,
// for this platform (files/<GOOS>_<GOARCH>/updateagent).
func publishAgent(t *testing.T, e *Env, version, bin string) {
	t.Helper()
	dir := filepath.Join(e.Dir, "bundles", "updateagent-"+version)
	plat := filepath.Join(dir, "files", runtime.GOOS+"_"+runtime.GOARCH)
	os.MkdirAll(plat, 0o755)
	copyFile(t, bin, filepath.Join(plat, "updateagent"), 0o755)
	e.MustCLI(t, "release", "publish", "--product", "updateagent", "--version", version, "--upgrade-from", ">= 1.0", "--progress", "never", dir)
}

// installAgentCopy puts a copy of bin where the site's agent runs from:
// the self-update replaces that file.
func installAgentCopy(t *testing.T, s *Site, bin string) string {
	t.Helper()
	exe := filepath.Join(s.Dir, "bin", "updateagent")
	os.MkdirAll(filepath.Dir(exe), 0o755)
	copyFile(t, bin, exe, 0o755)
	return exe
}

func (s *Site) startAgentFrom(t *testing.T, exe string, env ...string) *Proc {
	t.Helper()
	s.agent = Start(t, "agent "+s.Name, filepath.Join(s.Dir, "agent.log"), append(append([]string{}, s.ExtraEnv...), env...), exe,
		"run", "--config", s.Config, "--name", "updateagent-test")
	return s.agent
}

// upgradeAgent assigns version of the agent to the site and returns the job.
func upgradeAgent(t *testing.T, e *Env, s *Site, version string) string {
	t.Helper()
	out := e.MustCLI(t, "upgrade", "--site", s.Name, "--product", "updateagent", "--to", version)
	for _, j := range s.History(t) { // newest first
		if j.Product == "updateagent" && j.To == version {
			return j.ID
		}
	}
	t.Fatalf("upgrade --product updateagent made no job: %s", out)
	return ""
}

// awaitJobEnd waits until the server has job id ended and returns it.
func awaitJobEnd(t *testing.T, s *Site, id string) protocol.Job {
	t.Helper()
	var job protocol.Job
	// The agent's check-in may end the job before its last events (with
	// the reason) are delivered: wait for the end event too.
	Await(t, "job "+id+" to end, with its end event", func() bool {
		for _, j := range s.History(t) {
			if j.ID == id {
				job = j
				ended := j.Result != protocol.ResultPending && j.Result != protocol.ResultRunning
				if !ended || len(j.Events) == 0 {
					return false
				}
				switch j.Events[len(j.Events)-1].State {
				case protocol.StateCommitted, protocol.StateRolledBack, protocol.StateFailed:
					return true
				}
				return false
			}
		}
		return false
	})
	return job
}

func awaitAgentVersion(t *testing.T, s *Site, v string) {
	t.Helper()
	Await(t, "the site to report agent_version "+v, func() bool { return s.Info(t).AgentVersion == v })
}

func jobText(j protocol.Job) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s->%s: %s (%s)\n", j.ID, j.Product, j.From, j.To, j.Result, j.Reason)
	for _, ev := range j.Events {
		fmt.Fprintf(&b, "  %d %s %s\n", ev.Seq, ev.State, ev.Message)
	}
	return b.String()
}

// swapToHealthy is the "N after the swap" the new agent journals.
var swapToHealthy = regexp.MustCompile(`runs and checked in, (\S+) after the swap`)

// trialHealthy is the "N after it started" the new agent on trial
// journals.
var trialHealthy = regexp.MustCompile(`checked in healthy, (\S+) after it started`)

// logSwapToHealthy logs the new agent's times: start on trial to its
// healthy check-in, and swap to the swapped-in agent's check-in.
func logSwapToHealthy(t *testing.T, j protocol.Job) {
	var trial, swap string
	for _, ev := range j.Events {
		if m := trialHealthy.FindStringSubmatch(ev.Message); m != nil {
			trial = m[1]
		}
		if m := swapToHealthy.FindStringSubmatch(ev.Message); m != nil {
			swap = m[1]
		}
	}
	if trial == "" || swap == "" {
		t.Errorf("no trial or swap times in the job's events:\n%s", jobText(j))
	}
	t.Logf("self-update %s -> %s: trial start -> healthy check-in %s; swap -> swapped-in agent checked in %s", j.From, j.To, trial, swap)
}

// TestAgentUpgradesItselfAsService installs agent 1.0.0 as a real OS
// service (SysV init here, systemd where it runs), upgrades it to 2.0.0,
// sees the site report the new agent_version and the service run the new
// binary, then upgrades the app with the new agent.
func TestAgentUpgradesItselfAsService(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("installing an OS service needs root")
	}
	const name = "updateagent-selfupdate-test"
	env := New(t)
	v1, v2 := buildAgent(t, "1.0.0"), buildAgent(t, "2.0.0")
	publishAgent(t, env, "2.0.0", v2)
	env.Publish(t, "1.0.0", Healthy)
	site := env.PrepareSite(t, "svc-self", "acme")
	exe := installAgentCopy(t, site, v1)
	agent := func(args ...string) (string, error) {
		out, err := exec.Command(exe, args...).CombinedOutput()
		return string(out), err
	}
	t.Cleanup(func() {
		agent("uninstall", "--name", name)
		if t.Failed() {
			for _, f := range []string{"/var/log/" + name + ".err", "/var/log/" + name + ".log"} {
				b, _ := os.ReadFile(f)
				t.Logf("---- %s ----\n%s", f, tail(b, 80))
			}
		}
	})
	if out, err := agent("install", "--config", site.Config, "--name", name); err != nil {
		t.Fatalf("install: %v\n%s", err, out)
	}
	awaitAgentVersion(t, site, "1.0.0")

	id := upgradeAgent(t, env, site, "2.0.0")
	job := awaitJobEnd(t, site, id)
	if job.Result != protocol.ResultSucceeded {
		t.Fatalf("self-update: %s", jobText(job))
	}
	awaitAgentVersion(t, site, "2.0.0")
	logSwapToHealthy(t, job)
	if got, want := SHA256File(t, exe), SHA256File(t, v2); got != want {
		t.Errorf("the service's executable is not the 2.0.0 build after the upgrade")
	}
	if got, want := SHA256File(t, filepath.Join(filepath.Dir(exe), ".updateagent.old")), SHA256File(t, v1); got != want {
		t.Errorf("the old binary is not kept beside the executable for a rollback")
	}
	if out, err := agent("version"); err != nil || strings.TrimSpace(out) != "2.0.0" {
		t.Errorf("updateagent version after the upgrade: %q %v", out, err)
	}
	// The new agent does the app's upgrades.
	site.Upgrade(t, "1.0.0")
	site.AwaitHealthy(t, "1.0.0")
	if out, err := agent("stop", "--name", name); err != nil {
		t.Fatalf("stop: %v\n%s", err, out)
	}
}

// TestAgentSelfUpdateRollsBackABrokenAgent: a new agent that exits at
// start, and one that never checks in, are rolled back to the old binary,
// which reports the job rolled_back with the reason.
func TestAgentSelfUpdateRollsBackABrokenAgent(t *testing.T) {
	t.Parallel()
	env := New(t)
	v1 := buildAgent(t, "1.0.0")
	publishAgent(t, env, "2.0.1", buildAgent(t, "2.0.1", "failstart"))
	publishAgent(t, env, "2.0.2", buildAgent(t, "2.0.2", "hangstart"))
	site := env.PrepareSite(t, "broken-new", "acme", `self_update_trial = "5s"`)
	exe := installAgentCopy(t, site, v1)
	p := site.startAgentFrom(t, exe)
	awaitAgentVersion(t, site, "1.0.0")
	for v, want := range map[string]string{
		"2.0.1": "exited before it was healthy (exit status 4)",
		"2.0.2": "did not check in healthy within 5s",
	} {
		id := upgradeAgent(t, env, site, v)
		job := awaitJobEnd(t, site, id)
		if job.Result != protocol.ResultRolledBack || !strings.Contains(job.Reason, want) {
			t.Fatalf("self-update to the broken %s: want rolled_back with %q:\n%s", v, want, jobText(job))
		}
		if got := SHA256File(t, exe); got != SHA256File(t, v1) {
			t.Fatalf("after the rollback from %s the executable is not the old agent", v)
		}
		if p.Exited() {
			t.Fatalf("the agent process exited: it should have gone on as the old agent")
		}
		awaitAgentVersion(t, site, "1.0.0")
		t.Logf("%s rolled back: %s", v, job.Reason)
	}
}

// TestAgentSelfUpdateKilled kills the agents during the self-update: the
// old agent right after it journaled the trial's start, the new agent on
// trial at its start, the old agent with kill -9 while the new one is on
// trial (a build that never checks in), and the new agent right after it
// proved itself (before the swap). Each time, the agent that runs next
// runs a complete binary, reports its version, and the job ends once:
// rolled_back to the old agent, or succeeded once the proven one was
// swapped in.
func TestAgentSelfUpdateKilled(t *testing.T) {
	t.Parallel()
	env := New(t)
	v1, v2 := buildAgent(t, "1.0.0"), buildAgent(t, "2.0.0")
	publishAgent(t, env, "2.0.0", v2)
	publishAgent(t, env, "2.0.2", buildAgent(t, "2.0.2", "hangstart"))
	site := env.PrepareSite(t, "killed", "acme", `self_update_trial = "60s"`)
	exe := installAgentCopy(t, site, v1)
	site.startAgentFrom(t, exe)
	awaitAgentVersion(t, site, "1.0.0")
	site.StopAgent(t)

	for _, tc := range []struct {
		name, version, failpoint string
		oldDies                  bool // the old agent exits (and is started again)
		result, want, runs       string
	}{
		{"old agent at the trial's start", "2.0.0", "starting", true, protocol.ResultRolledBack, "interrupted during starting", v1},
		{"new agent at its start", "2.0.0", "health_check", false, protocol.ResultRolledBack, "exited before it was healthy (exit status 3)", v1},
		{"kill -9 of the old agent during the trial", "2.0.2", "", true, protocol.ResultRolledBack, "interrupted during starting", v1},
		{"new agent once healthy, before the swap", "2.0.0", "switching", false, protocol.ResultSucceeded, "runs and checked in", v2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var env1 []string
			if tc.failpoint != "" {
				env1 = []string{"UPDATEAGENT_FAILPOINT=" + tc.failpoint}
			}
			p := site.startAgentFrom(t, exe, env1...)
			id := upgradeAgent(t, env, site, tc.version)
			switch {
			case tc.failpoint == "":
				Await(t, "the new agent on trial", func() bool {
					out, _, _ := env.CLI("history", "--site", site.Name, "--json")
					return strings.Contains(out, "starting agent "+tc.version+" on trial")
				})
				p.Kill(t)
			case tc.oldDies:
				if code := p.Wait(t, 90e9); code != 3 {
					t.Fatalf("the agent exited with %d, want the failpoint's 3", code)
				}
			}
			if tc.oldDies {
				site.startAgentFrom(t, exe)
			}
			job := awaitJobEnd(t, site, id)
			if job.Result != tc.result || !strings.Contains(job.Reason+job.Events[len(job.Events)-1].Message, tc.want) {
				t.Fatalf("want %s with %q:\n%s", tc.result, tc.want, jobText(job))
			}
			want := "1.0.0"
			if tc.result == protocol.ResultSucceeded {
				want = tc.version
				logSwapToHealthy(t, job)
			}
			awaitAgentVersion(t, site, want)
			if got := SHA256File(t, exe); got != SHA256File(t, tc.runs) {
				t.Fatalf("the executable is not agent %s", want)
			}
			ended := 0
			for _, ev := range job.Events {
				if ev.State == protocol.StateRolledBack || ev.State == protocol.StateFailed || ev.State == protocol.StateCommitted {
					ended++
				}
			}
			if ended != 1 {
				t.Errorf("the job has %d end events:\n%s", ended, jobText(job))
			}
			site.StopAgent(t)
		})
	}
}
