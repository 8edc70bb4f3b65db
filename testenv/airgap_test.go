//go:build e2e && linux

package testenv

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dropless/dropless/pkg/protocol"
)

// applyOffline runs `updateagent apply-offline` in an empty network
// namespace (only its own loopback, where the sample app listens): the
// update server cannot be reached. It returns the output and exit code.
func (s *Site) applyOffline(t *testing.T, file string, extra ...string) (string, int) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("apply-offline runs in an empty network namespace (unshare -n): needs root")
	}
	args := append([]string{"-n", "sh", "-c", `ip link set lo up && exec "$@"`, "sh", s.env.Bin.Agent, "apply-offline", "--config", s.Config}, extra...)
	cmd := exec.Command("unshare", append(args, file)...)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	t.Logf("apply-offline %s (exit %d):\n%s", filepath.Base(file), code, tail(out, 15))
	return string(out), code
}

// netnsAppVersion asks the sample app for its health from inside the
// network namespace it was started in (by apply-offline).
func (s *Site) netnsAppVersion(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.Dir, "app.pid"))
	if err != nil {
		t.Fatalf("the app has no pid file: %v", err)
	}
	out, err := exec.Command("nsenter", "-t", strings.TrimSpace(string(b)), "-n", "curl", "-sf", "http://"+s.AppAddr+"/health").Output()
	if err != nil {
		t.Fatalf("health of the app in its namespace: %v", err)
	}
	return strings.TrimSpace(string(out))
}

func offlineJobs(h []protocol.Job) []protocol.Job {
	var out []protocol.Job
	for _, j := range h {
		if strings.HasPrefix(j.ID, "offline-") {
			out = append(out, j)
		}
	}
	return out
}

// TestAirgapUpgrade: a site that can no longer reach the server is
// upgraded from 1.0.0 to 2.0.0 across the hop 1.1.0 with a file exported
// from the real server and applied in an empty network namespace; the
// report client IT carries back puts both jobs into the site's history
// and the site's installed version becomes 2.0.0; when the agent reaches
// the server again it delivers the same jobs, which are not duplicated.
func TestAirgapUpgrade(t *testing.T) {
	t.Parallel()
	env := New(t)
	env.Publish(t, "1.0.0", Healthy)
	env.Publish(t, "1.1.0", Healthy, "--upgrade-from", ">= 1.0, < 1.1")
	env.Publish(t, "2.0.0", Healthy, "--upgrade-from", ">= 1.1, < 2.0")
	site := env.NewSite(t, "acme-airgap", "acme")
	site.Upgrade(t, "1.0.0")
	site.AwaitHealthy(t, "1.0.0")
	site.StopAgent(t) // the site goes dark
	site.stopApp()    // and is started again inside the namespace by apply-offline's jobs

	file := filepath.Join(env.Dir, "sampleapp-2.0.0.airgap")
	out := env.MustCLI(t, "offline", "export", "--product", Product, "--version", "2.0.0", "--from", "1.0.0", "--out", file)
	if !strings.Contains(out, "1.1.0 -> 2.0.0") {
		t.Errorf("export did not plan the hop: %s", out)
	}
	// The file's size against its bundles'.
	var rels []protocol.Release
	if err := json.Unmarshal([]byte(env.MustCLI(t, "release", "list", "--product", Product, "--json")), &rels); err != nil {
		t.Fatal(err)
	}
	var bundles int64
	for _, r := range rels {
		if r.Version != "1.0.0" {
			bundles += r.Length
		}
	}
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("air-gap file %d bytes; bundles 1.1.0 + 2.0.0 %d bytes; overhead %d bytes (%.2f%%)",
		fi.Size(), bundles, fi.Size()-bundles, 100*float64(fi.Size()-bundles)/float64(bundles))
	if fi.Size() < bundles || fi.Size() > bundles+256<<10 {
		t.Errorf("file %d bytes for %d bytes of bundles", fi.Size(), bundles)
	}

	report := filepath.Join(site.Dir, "report.json")
	out, code := site.applyOffline(t, file, "--report", report)
	if code != 0 || !strings.Contains(out, "installed: 2.0.0") {
		t.Fatalf("apply-offline exit %d", code)
	}
	if v := site.netnsAppVersion(t); v != "2.0.0" {
		t.Fatalf("the app answers %q", v)
	}
	if v := site.Info(t).InstalledVersion; v != "1.0.0" {
		t.Fatalf("the server knew of the offline upgrade before the report: %q", v)
	}

	// Support imports the report client IT carried back.
	sup := strings.TrimSpace(env.MustCLI(t, "token", "create", "--role", "support", "--name", "support-1"))
	imp := func() protocol.ImportReportResponse {
		stdout, stderr, code := env.CLI("sites", "import-report", report, "--json", "--token", sup)
		if code != 0 {
			t.Fatalf("import-report: exit %d: %s", code, stderr)
		}
		var r protocol.ImportReportResponse
		if err := json.Unmarshal([]byte(stdout), &r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	r := imp()
	if r.Site != site.Name || len(r.Jobs) != 2 || r.New != 2 || r.InstalledVersion != "2.0.0" {
		t.Fatalf("import: %+v", r)
	}
	if v := site.Info(t).InstalledVersion; v != "2.0.0" {
		t.Fatalf("after the import the server shows %q installed", v)
	}
	check := func() {
		t.Helper()
		jobs := offlineJobs(site.History(t))
		if len(jobs) != 2 {
			t.Fatalf("history has %d offline jobs, want 2", len(jobs))
		}
		// Newest first: 1.1.0 -> 2.0.0, then 1.0.0 -> 1.1.0.
		for i, want := range [][2]string{{"1.1.0", "2.0.0"}, {"1.0.0", "1.1.0"}} {
			j := jobs[i]
			if j.From != want[0] || j.To != want[1] || j.Result != protocol.ResultSucceeded {
				t.Errorf("offline job %d: %s -> %s %s", i, j.From, j.To, j.Result)
			}
			checkSeq(t, j)
			if st := eventStates(j); len(st) == 0 || st[len(st)-1] != protocol.StateCommitted {
				t.Errorf("job %s events %v", j.ID, st)
			}
		}
	}
	check()
	if r := imp(); r.New != 0 || r.Events != 0 {
		t.Errorf("a second import added %+v", r)
	}
	audit := env.MustCLI(t, "audit", "list", "--actor", "support-1")
	if !strings.Contains(audit, "site.import_report") {
		t.Errorf("the import is not audited: %s", audit)
	}

	// The agent reaches the server again: it delivers the same jobs,
	// which are not stored twice, and its check-ins say 2.0.0.
	site.StartAgent(t)
	Await(t, "the agent's offline events delivered", func() bool {
		b, _ := os.ReadFile(filepath.Join(site.Dir, "agent.log"))
		return strings.Contains(string(b), "offline job reported")
	})
	check()
	if v := site.Info(t).InstalledVersion; v != "2.0.0" {
		t.Fatalf("after the agent's check-in: %q", v)
	}
}

// TestAirgapRefusals: a damaged file, a file for another product and a
// yanked version are refused, with the installed version left running.
func TestAirgapRefusals(t *testing.T) {
	t.Parallel()
	env := New(t)
	env.Publish(t, "1.0.0", Healthy)
	env.Publish(t, "1.1.0", Healthy, "--upgrade-from", ">= 1.0, < 1.1")
	env.Publish(t, "2.0.0", Healthy, "--upgrade-from", ">= 1.1, < 2.0")
	env.PublishBundle(t, "3.0.0", Bundle{Product: "otherapp"})
	site := env.NewSite(t, "acme-refusals", "acme")
	site.Upgrade(t, "1.0.0")
	site.AwaitHealthy(t, "1.0.0")
	site.StopAgent(t)
	site.stopApp()
	export := func(name string, args ...string) string {
		file := filepath.Join(env.Dir, name)
		env.MustCLI(t, append([]string{"offline", "export", "--out", file}, args...)...)
		return file
	}
	good := export("good.airgap", "--product", Product, "--version", "1.1.0")
	b, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-5000] ^= 0xff // inside the bundle, the file's last entry
	damaged := filepath.Join(env.Dir, "damaged.airgap")
	os.WriteFile(damaged, b, 0o644)
	truncated := filepath.Join(env.Dir, "truncated.airgap")
	os.WriteFile(truncated, b[:len(b)/2], 0o644)
	other := export("other.airgap", "--product", "otherapp", "--version", "3.0.0")

	for _, tc := range []struct{ name, file, want string }{
		{"damaged", damaged, "damaged"},
		{"truncated", truncated, "truncated"},
		{"other product", other, "for product otherapp"},
	} {
		out, code := site.applyOffline(t, tc.file)
		if code != 1 || !strings.Contains(out, tc.want) {
			t.Errorf("%s: exit %d, want 1 and %q", tc.name, code, tc.want)
		}
		if link, _ := os.Readlink(filepath.Join(site.Install, "current")); !strings.HasSuffix(link, "1.0.0") {
			t.Errorf("%s: current -> %q", tc.name, link)
		}
	}
	if h := offlineJobs(site.History(t)); len(h) != 0 {
		t.Errorf("refused files made jobs: %+v", h)
	}

	env.MustCLI(t, "release", "yank", "--product", Product, "--version", "1.1.0", "--reason", "corrupts invoices")
	_, stderr, code := env.CLI("offline", "export", "--product", Product, "--version", "1.1.0", "--out", filepath.Join(env.Dir, "y.airgap"))
	if code != 1 || !strings.Contains(stderr, "yanked") {
		t.Errorf("export of a yanked version: exit %d %q", code, stderr)
	}
	_, stderr, code = env.CLI("offline", "export", "--product", Product, "--version", "2.0.0", "--from", "1.0.0", "--out", filepath.Join(env.Dir, "y2.airgap"))
	if code != 1 || !strings.Contains(stderr, "no upgrade path") {
		t.Errorf("export through a yanked hop: exit %d %q", code, stderr)
	}
	// Refused before the app was touched: the app still answers 1.0.0
	// once started again by hand, and nothing was rolled back.
	if out, err := exec.Command(env.Bin.Agent, "status", "--config", site.Config, "--json").Output(); err != nil || !strings.Contains(string(out), `"1.0.0"`) {
		t.Errorf("status: %v %s", err, out)
	}
}
