//go:build e2e && linux

package testenv

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
)

// TestFleetScenario: the 100,000-site run's load generator (make
// bench-fleet) at a small scale against a real server, so that its
// figures stand on a tested tool: two shards of `loadgen --scenario
// fleet`, one with the load generator's lean client and one with the
// agent's own (pkg/agentapi), hold 200 agents enrolled through the API in
// long-poll; a rollout in two waves reaches every one, each reports its
// job done through the agent protocol, the shards end with no error, and
// the server's rollout has every site upgraded.
func TestFleetScenario(t *testing.T) {
	t.Parallel()
	env := New(t)
	env.Publish(t, "1.1.0", Healthy)
	loadgen, enroll := buildTool(t, "./loadgen"), buildTool(t, "./perf/tools/enroll")
	const n = 200
	tok := strings.TrimSpace(env.MustCLI(t, "enroll-token", "create", "--client", "fleet", "--uses", fmt.Sprint(n)))
	creds := filepath.Join(env.Dir, "creds.txt")
	if out, err := exec.Command(enroll, "--server", env.URL, "--token", tok, "--client", "fleet", "--product", Product,
		"--site-prefix", "fleet", "--n", fmt.Sprint(n), "--out", creds).CombinedOutput(); err != nil {
		t.Fatalf("enroll: %v\n%s", err, out)
	}

	clients := []string{"lean", "agentapi"}
	var shards []*Proc
	for i, c := range clients {
		shards = append(shards, Start(t, "loadgen-"+c, filepath.Join(env.Dir, "shard-"+c+".log"), nil, loadgen,
			"--scenario", "fleet", "--creds", creds, "--shard", fmt.Sprintf("%d/%d", i+1, len(clients)), "--servers", env.URL,
			"--version", "1.1.0", "--ramp", "0", "--timeout", "3m", "--agent-client", c))
	}
	for _, p := range shards {
		Await(t, p.Name+" READY", func() bool {
			b, _ := os.ReadFile(p.Log)
			return strings.Contains(string(b), "READY 100 agents long-polling")
		})
	}
	id := strings.TrimSpace(env.MustCLI(t, "rollout", "create", "--product", Product, "--version", "1.1.0", "--client", "fleet", "--waves", "50%,100%"))
	for i, p := range shards {
		code := p.Wait(t, 3*time.Minute)
		b, _ := os.ReadFile(p.Log)
		line := regexp.MustCompile(`(?m)^SHARD .*$`).FindString(string(b))
		want := "agents=100 assigned=100 reported=100 "
		if code != 0 || !strings.Contains(line, want) || !strings.Contains(line, " client="+clients[i]+" ") || !strings.Contains(line, " errors=0") {
			t.Errorf("%s exited %d with %q; want 0 and %q, client=%s, errors=0\n%s", p.Name, code, line, want, clients[i], b)
		}
	}
	ro := env.awaitRollout(t, id, protocol.RolloutCompleted)
	if ro.Sites != n || ro.Started != n || ro.Failures != 0 {
		t.Errorf("rollout: %d sites, %d started, %d failures; want %d, %d, 0", ro.Sites, ro.Started, ro.Failures, n, n)
	}
	// What the server says runs there: the reports the agents sent.
	var sites []protocol.Site
	if err := json.Unmarshal([]byte(env.MustCLI(t, "sites", "list", "--client", "fleet", "--json")), &sites); err != nil {
		t.Fatal(err)
	}
	upgraded := 0
	for _, s := range sites {
		if s.InstalledVersion == "1.1.0" {
			upgraded++
		}
	}
	if len(sites) != n || upgraded != n {
		t.Errorf("%d sites, %d report 1.1.0; want %d and %d", len(sites), upgraded, n, n)
	}
}

// TestUpgradeScenario: the trigger's load generator (make bench-trigger
// and the team's trigger-latency script run `loadgen` with its default
// scenario) against a real server, with each of its clients: its agents
// enroll, long-poll, get every client-wide upgrade it triggers, report
// each job done through the agent protocol, and the server ends with every
// site on the last version. A client that lost an assignment, a report or
// an event would show here.
func TestUpgradeScenario(t *testing.T) {
	t.Parallel()
	env := New(t)
	loadgen := buildTool(t, "./loadgen")
	const n, rounds = 40, 2
	for _, c := range []string{"lean", "agentapi"} {
		out, err := exec.Command(loadgen, "--server", env.URL, "--token", env.Admin, "--client", "up-"+c, "--agents", fmt.Sprint(n),
			"--rounds", fmt.Sprint(rounds), "--timeout", "2m", "--agent-client", c).CombinedOutput()
		all := regexp.MustCompile(`(?m)^all rounds +n=(\d+) `).FindStringSubmatch(string(out))
		if err != nil || all == nil || all[1] != fmt.Sprint(n*rounds) || !strings.Contains(string(out), "agent errors: check-ins 0, events 0\n") {
			t.Errorf("loadgen --agent-client %s: %v; want n=%d in all rounds and no agent error\n%s", c, err, n*rounds, out)
			continue
		}
		var sites []protocol.Site
		if err := json.Unmarshal([]byte(env.MustCLI(t, "sites", "list", "--client", "up-"+c, "--json")), &sites); err != nil {
			t.Fatal(err)
		}
		upgraded := 0
		for _, s := range sites {
			if s.InstalledVersion == fmt.Sprintf("1.%d.0", rounds) && s.State == protocol.StateIdle {
				upgraded++
			}
		}
		if len(sites) != n || upgraded != n {
			t.Errorf("--agent-client %s: %d sites, %d idle on 1.%d.0; want %d and %d", c, len(sites), upgraded, rounds, n, n)
		}
	}
}

// buildTool builds the command in pkg (relative to testenv/) into a
// temporary directory and returns its path.
func buildTool(t *testing.T, pkg string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), filepath.Base(pkg))
	if b, err := exec.Command("go", "build", "-o", out, pkg).CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return out
}
