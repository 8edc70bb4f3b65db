//go:build e2e && unix

package testenv

import (
	"bufio"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/dropless/dropless/pkg/dbtest"
	"github.com/dropless/dropless/pkg/protocol"
)

// TestReplicasOnPostgres: two real `serve --store postgres://... --data
// SHARED` replicas. Both publish at once (the agents' go-tuf client then
// installs from the result); each background job's lease is held by one
// replica only; an upgrade made through A wakes the agent long-polling B
// within its long-poll (its poll interval is 10 minutes: nothing else
// would bring the job); B is killed (SIGKILL), the agent moves to A, and
// the next upgrade completes with its events recorded once.
func TestReplicasOnPostgres(t *testing.T) {
	t.Parallel()
	dsn := dbtest.PostgresSchema(t, "replicas") // skips without TEST_POSTGRES_DSN
	a := New(t, Store(dsn))
	bListen := freeAddr(t)
	b := *a
	b.URL = "http://" + bListen
	b.server = Start(t, "updateserver-b", filepath.Join(a.Dir, "server-b.log"), nil, a.Bin.Server,
		"serve", "--store", dsn, "--data", a.Data, "--listen", bListen, "--poll-interval", "2s")
	b.awaitServer(t)

	// Publishing through both at once.
	done := make(chan string, 2)
	for i, env := range []*Env{a, &b} {
		go func() {
			dir := filepath.Join(a.Dir, "rel", string(rune('a'+i)))
			_, errs, code := env.publishQuiet(dir, []string{"1.0.0", "1.1.0"}[i])
			if code != 0 {
				done <- errs
				return
			}
			done <- ""
		}()
	}
	for range 2 {
		if e := <-done; e != "" {
			t.Fatalf("publishing through both replicas at once: %s", e)
		}
	}

	// One holder per lease.
	held := map[string]int{}
	for _, env := range []*Env{a, &b} {
		for name, v := range leasesHeld(t, env) {
			if v {
				held[name]++
			}
		}
	}
	for _, name := range []string{"tuf-refresh", "job-sweeper", "rollouts", "follow", "webhooks"} {
		if held[name] != 1 {
			t.Errorf("lease %s is held by %d replicas, want 1 (%v)", name, held[name], held)
		}
	}

	site := a.PrepareSite(t, "replicated", "acme")
	cfg, err := os.ReadFile(site.Config)
	if err != nil {
		t.Fatal(err)
	}
	cfg = regexp.MustCompile(`(?m)^server = .*$`).ReplaceAll(cfg, []byte(`servers = ["`+b.URL+`", "`+a.URL+`"]`))
	cfg = regexp.MustCompile(`(?m)^poll_interval = .*$`).ReplaceAll(cfg, []byte(`poll_interval = "10m"`))
	if err := os.WriteFile(site.Config, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	site.StartAgent(t)
	Await(t, "site checked in", func() bool { return site.Info(t).LastSeen != nil })
	site.Upgrade(t, "1.0.0") // through A; the agent long-polls B
	site.AwaitHealthy(t, "1.0.0")
	if j := site.AwaitJob(t); j.Result != protocol.ResultSucceeded {
		t.Fatalf("install through A while the agent long-polled B: %+v", j)
	}

	b.server.Kill(t)
	site.Upgrade(t, "1.1.0")
	site.AwaitHealthy(t, "1.1.0")
	j := site.AwaitJob(t)
	if j.Result != protocol.ResultSucceeded || j.To != "1.1.0" {
		t.Fatalf("upgrade after B was killed: %+v", j)
	}
	checkSeq(t, j)
	log, _ := os.ReadFile(filepath.Join(site.Dir, "agent.log"))
	if !strings.Contains(string(log), "moving on to the next one") {
		t.Fatalf("the agent's log does not say it moved on to A:\n%s", tail(log, 30))
	}
	// A takes over B's leases (15 s TTL).
	Await(t, "A holding every lease", func() bool {
		h := leasesHeld(t, a)
		return h["tuf-refresh"] && h["job-sweeper"] && h["rollouts"] && h["follow"] && h["webhooks"]
	})
}

// publishQuiet publishes a healthy release of version through env,
// returning the CLI's outcome instead of failing the test.
func (e *Env) publishQuiet(dir, version string) (string, string, int) {
	if err := os.MkdirAll(filepath.Join(dir, "files"), 0o755); err != nil {
		return "", err.Error(), 1
	}
	copyErr := func(src, dst string) error {
		b, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o755)
	}
	if err := copyErr(e.Bin.SampleApp, filepath.Join(dir, "files", "sampleapp")); err != nil {
		return "", err.Error(), 1
	}
	os.WriteFile(filepath.Join(dir, "files", "VERSION"), []byte(version+"\n"), 0o644)
	return e.CLI("release", "publish", "--product", Product, "--version", version, "--channel", "stable", "--progress", "never", dir)
}

// leasesHeld reads updateserver_lease_held from env's /metrics.
func leasesHeld(t *testing.T, env *Env) map[string]bool {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, env.URL+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+env.Admin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]bool{}
	re := regexp.MustCompile(`^updateserver_lease_held\{lease="([^"]+)"\} (\d)`)
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			out[m[1]] = m[2] == "1"
		}
	}
	return out
}
