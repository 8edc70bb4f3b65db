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
