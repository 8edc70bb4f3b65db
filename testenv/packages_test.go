//go:build e2e && packages && linux

package testenv

import (
	"archive/zip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// The package tests check what `make packages` wrote to dist/ (run them
// with `make test-packages`, which builds the packages first). They need
// dpkg-deb; the install test needs root and installs the agent .deb on
// this machine.

// packagesDir is where `make packages` writes (env PACKAGES_DIR to override).
func packagesDir() string {
	if d := os.Getenv("PACKAGES_DIR"); d != "" {
		return d
	}
	return filepath.Join("..", "dist")
}

// newestPackage returns the newest file in dist/ matching pattern.
func newestPackage(t *testing.T, pattern string) string {
	t.Helper()
	matches, _ := filepath.Glob(filepath.Join(packagesDir(), pattern))
	if len(matches) == 0 {
		t.Fatalf("no %s in %s: run make packages first (make test-packages does)", pattern, packagesDir())
	}
	slices.SortFunc(matches, func(a, b string) int {
		sa, _ := os.Stat(a)
		sb, _ := os.Stat(b)
		return sb.ModTime().Compare(sa.ModTime())
	})
	return matches[0]
}

// sh runs a command, logs it with its output (the transcript) and
// returns the output.
func sh(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	t.Logf("$ %s %s\n%s", name, strings.Join(args, " "), strings.TrimRight(string(out), "\n"))
	return string(out), err
}

func mustSh(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := sh(t, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return out
}

func wantLines(t *testing.T, what, out string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("%s: no %q in\n%s", what, w, out)
		}
	}
}

// TestPackageContents: each .deb and .rpm installs what the contract
// says, with the config kept on upgrade and the maintainer scripts in
// place; the Windows zip holds the agent, its config and both scripts.
func TestPackageContents(t *testing.T) {
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Fatal("dpkg-deb is needed: apt-get install dpkg")
	}
	arch := runtime.GOARCH
	agentDeb := newestPackage(t, "updateagent_*_"+arch+".deb")
	serverDeb := newestPackage(t, "updateserver_*_"+arch+".deb")

	wantLines(t, "agent .deb files", mustSh(t, "dpkg-deb", "-c", agentDeb),
		"-rwxr-xr-x root/root", "./usr/bin/updateagent",
		"-rw------- root/root", "./etc/updateagent/agent.toml",
		"./usr/lib/systemd/system/updateagent.service",
		"drwx------ root/root", "./var/lib/updateagent/")
	wantLines(t, "agent .deb control", mustSh(t, "dpkg-deb", "-I", agentDeb),
		"Package: updateagent", "Architecture: "+arch, "postinst", "prerm", "postrm", "conffiles")
	wantLines(t, "agent .deb conffiles", mustSh(t, "dpkg-deb", "-I", agentDeb, "conffiles"), "/etc/updateagent/agent.toml")
	wantLines(t, "server .deb files", mustSh(t, "dpkg-deb", "-c", serverDeb),
		"./usr/bin/updateserver", "./usr/lib/systemd/system/updateserver.service",
		"./etc/default/updateserver", "drwx------ root/root", "./var/lib/updateserver/")
	wantLines(t, "server .deb conffiles", mustSh(t, "dpkg-deb", "-I", serverDeb, "conffiles"), "/etc/default/updateserver")

	if _, err := exec.LookPath("rpm"); err != nil {
		t.Log("rpm is not installed (apt-get install rpm): the .rpm contents are not checked")
	} else {
		rpmArch := map[string]string{"amd64": "x86_64", "arm64": "aarch64"}[arch]
		agentRPM := newestPackage(t, "updateagent-*."+rpmArch+".rpm")
		serverRPM := newestPackage(t, "updateserver-*."+rpmArch+".rpm")
		wantLines(t, "agent .rpm files", mustSh(t, "rpm", "-qlp", agentRPM),
			"/usr/bin/updateagent", "/etc/updateagent/agent.toml", "/usr/lib/systemd/system/updateagent.service", "/var/lib/updateagent")
		wantLines(t, "agent .rpm config files", mustSh(t, "rpm", "-qcp", agentRPM), "/etc/updateagent/agent.toml")
		scripts, err := exec.Command("rpm", "-qp", "--scripts", agentRPM).CombinedOutput()
		if err != nil {
			t.Fatalf("rpm -qp --scripts: %v\n%s", err, scripts)
		}
		wantLines(t, "agent .rpm scripts", string(scripts),
			"postinstall scriptlet", "preuninstall scriptlet", "postuninstall scriptlet", "check-config")
		wantLines(t, "server .rpm files", mustSh(t, "rpm", "-qlp", serverRPM),
			"/usr/bin/updateserver", "/etc/default/updateserver", "/usr/lib/systemd/system/updateserver.service", "/var/lib/updateserver")
	}

	zr, err := zip.OpenReader(newestPackage(t, "updateagent_*_windows_amd64.zip"))
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	var names []string
	for _, f := range zr.File {
		names = append(names, f.Name[strings.Index(f.Name, "/")+1:])
	}
	t.Logf("windows zip: %v", names)
	for _, want := range []string{"updateagent.exe", "agent.toml", "install.ps1", "uninstall.ps1"} {
		if !slices.Contains(names, want) {
			t.Errorf("windows zip has no %s: %v", want, names)
		}
	}
}

const (
	pkgConfig = "/etc/updateagent/agent.toml"
	pkgData   = "/var/lib/updateagent"
	pkgBin    = "/usr/bin/updateagent"
)

// packagedAgents returns the pids of processes running the packaged
// binary (also once it is deleted: "/usr/bin/updateagent (deleted)").
// Other agents on this machine (other tests') run from temp dirs.
func packagedAgents() []string {
	var pids []string
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		if exe, err := os.Readlink(filepath.Join("/proc", d.Name(), "exe")); err == nil && strings.HasPrefix(exe, pkgBin) {
			pids = append(pids, d.Name())
		}
	}
	return pids
}

// TestPackageInstallUpgradeRemove installs the agent .deb on this machine
// with dpkg (as root; without systemd the service is a SysV init script):
// the postinst leaves the unconfigured agent stopped and says what to do;
// with a real config `updateagent install` starts it as a service, and it
// enrolls and upgrades the sample app; reinstalling the package keeps the
// edited config and restarts the agent on the new binary; dpkg -r and
// --purge leave nothing behind.
func TestPackageInstallUpgradeRemove(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("installing a package needs root: run make test-packages as root")
	}
	for _, p := range []string{pkgBin, "/etc/init.d/updateagent", "/etc/updateagent"} {
		if _, err := os.Stat(p); err == nil {
			t.Fatalf("%s exists: the agent is installed on this machine already; this test installs and purges the package, so run it where it is not", p)
		}
	}
	deb := newestPackage(t, "updateagent_*_"+runtime.GOARCH+".deb")
	t.Cleanup(func() {
		if _, err := os.Stat(pkgBin); err == nil {
			exec.Command(pkgBin, "uninstall").Run()
		}
		exec.Command("dpkg", "--purge", "updateagent").Run()
	})

	// Install: nothing starts with the example config.
	out := mustSh(t, "dpkg", "-i", deb)
	wantLines(t, "postinst", out, "fill in "+pkgConfig, "updateagent install --config "+pkgConfig)
	if pids := packagedAgents(); len(pids) > 0 {
		t.Errorf("an unconfigured agent runs after dpkg -i (pids %v)", pids)
	}
	if _, err := os.Stat("/etc/init.d/updateagent"); err == nil {
		t.Error("dpkg -i installed a service for an unconfigured agent")
	}
	for path, want := range map[string]os.FileMode{pkgData: 0o700 | os.ModeDir, pkgConfig: 0o600} {
		if st, err := os.Stat(path); err != nil || st.Mode() != want {
			t.Errorf("%s: %v, %v; want mode %v", path, st.Mode(), err, want)
		}
	}
	if out, err := sh(t, pkgBin, "check-config", "--config", pkgConfig); err == nil || !strings.Contains(out, "site: missing") {
		t.Errorf("the example config passes check-config: %v", err)
	}
	if out, err := sh(t, pkgBin, "install", "--config", pkgConfig); err == nil || !strings.Contains(out, "site: missing") {
		t.Errorf("updateagent install started with the example config: %v\n%s", err, out)
	}

	// Configure it as client IT would, for a site of a real server.
	env := New(t)
	env.Publish(t, "1.0.0", Healthy)
	env.Publish(t, "1.1.0", Healthy)
	site := env.PrepareSite(t, "pkg-site", "acme")
	b, err := os.ReadFile(site.Config)
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(b), "data_dir = "+`"`+site.Data+`"`, "data_dir = "+`"`+pkgData+`"`, 1)
	if cfg == string(b) {
		t.Fatal("the site's config has no data_dir line to point at the packaged data dir")
	}
	if err := os.WriteFile(pkgConfig, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	mustSh(t, pkgBin, "check-config", "--config", pkgConfig)
	mustSh(t, pkgBin, "install", "--config", pkgConfig)
	if links, _ := filepath.Glob("/etc/rc[0-6S].d/[SK][0-9][0-9]updateagent"); len(links) == 0 {
		t.Log("updateagent install made no runlevel links")
	}
	Await(t, "the packaged agent to check in", func() bool { return site.Info(t).LastSeen != nil })
	if pids := packagedAgents(); len(pids) != 1 {
		t.Fatalf("%d agents run %s after install, want 1", len(pids), pkgBin)
	}
	site.Upgrade(t, "1.0.0")
	site.AwaitHealthy(t, "1.0.0")
	site.Upgrade(t, "1.1.0")
	site.AwaitHealthy(t, "1.1.0")
	if j := site.AwaitJob(t); j.To != "1.1.0" || j.Result != "succeeded" {
		t.Errorf("upgrade to 1.1.0: job %+v", j)
	}

	// Package upgrade (the same package again): the edited config stays,
	// the agent is restarted on the new binary and still reports.
	before := packagedAgents()
	mustSh(t, "dpkg", "-i", deb)
	if got, _ := os.ReadFile(pkgConfig); string(got) != cfg {
		t.Errorf("dpkg -i over an installed agent replaced the edited config with\n%s", got)
	}
	after := packagedAgents()
	if len(after) != 1 || slices.Equal(before, after) {
		t.Errorf("after the package upgrade: agents %v, before %v; want one new agent", after, before)
	}
	mustSh(t, pkgBin, "status", "--config", pkgConfig)

	// Remove: the service and the binary go, the config stays; purge takes
	// the config, the data and the logs.
	mustSh(t, "dpkg", "-r", "updateagent")
	links, _ := filepath.Glob("/etc/rc[0-6S].d/[SK][0-9][0-9]updateagent")
	for _, p := range append([]string{pkgBin, "/etc/init.d/updateagent"}, links...) {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s still there after dpkg -r", p)
		}
	}
	if pids := packagedAgents(); len(pids) > 0 {
		t.Errorf("the agent still runs after dpkg -r (pids %v)", pids)
	}
	if _, err := os.Stat(pkgConfig); err != nil {
		t.Errorf("dpkg -r removed the config (only --purge should): %v", err)
	}
	mustSh(t, "dpkg", "--purge", "updateagent")
	for _, p := range []string{"/etc/updateagent", pkgData, "/var/log/updateagent.log", "/var/log/updateagent.err"} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s still there after dpkg --purge", p)
		}
	}
	if out, err := exec.Command("dpkg-query", "-W", "-f", "${db:Status-Status}", "updateagent").CombinedOutput(); err == nil && strings.TrimSpace(string(out)) != "not-installed" {
		t.Errorf("dpkg still knows the package after --purge: %s", out)
	}
}
