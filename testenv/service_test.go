//go:build e2e && unix

package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestServiceInstall installs the real agent as a real OS service (systemd
// where it runs, SysV init scripts otherwise) under a test-only name,
// sees it check in, then stops and uninstalls it. It needs root, and runs
// in CI (.ci/run runs as root).
func TestServiceInstall(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("installing an OS service needs root")
	}
	const name = "updateagent-e2e-test"
	env := New(t)
	env.Publish(t, "1.0.0", Healthy)
	site := env.PrepareSite(t, "svc-site", "acme")
	agent := func(args ...string) (string, error) {
		out, err := exec.Command(env.Bin.Agent, args...).CombinedOutput()
		return string(out), err
	}
	t.Cleanup(func() { agent("uninstall", "--name", name) })

	out, err := agent("install", "--config", site.Config, "--name", name)
	if err != nil {
		t.Fatalf("install: %v\n%s", err, out)
	}
	t.Logf("install: %s", strings.TrimSpace(out))
	Await(t, "the service's agent to check in", func() bool { return site.Info(t).LastSeen != nil })
	// Installing again says what is the case, not "are you root?".
	if out, err := agent("install", "--config", site.Config, "--name", name); err == nil || !strings.Contains(out, "already installed") || strings.Contains(out, "root") {
		t.Errorf("install again: %v\n%s", err, out)
	}

	site.Upgrade(t, "1.0.0")
	site.AwaitHealthy(t, "1.0.0")

	if out, err := agent("stop", "--name", name); err != nil {
		t.Fatalf("stop: %v\n%s", err, out)
	}
	if out, err := agent("status", "--config", site.Config); err != nil || !strings.Contains(out, "1.0.0") {
		t.Errorf("status after stop: %v\n%s", err, out)
	}
	if out, err := agent("uninstall", "--name", name); err != nil {
		t.Fatalf("uninstall: %v\n%s", err, out)
	}
	if _, err := os.Stat("/etc/init.d/" + name); err == nil {
		t.Errorf("/etc/init.d/%s still there after uninstall", name)
	}
	if links, _ := filepath.Glob("/etc/rc?.d/*" + name); len(links) > 0 {
		t.Errorf("runlevel links left after uninstall: %v", links)
	}
	// Nothing installed: uninstall has nothing to do, start says to install.
	if out, err := agent("uninstall", "--name", name); err != nil || !strings.Contains(out, "not installed") {
		t.Errorf("uninstall again: %v\n%s", err, out)
	}
	if out, err := agent("start", "--name", name); err == nil || !strings.Contains(out, "not installed") || strings.Contains(out, "root") {
		t.Errorf("start when not installed: %v\n%s", err, out)
	}
}
