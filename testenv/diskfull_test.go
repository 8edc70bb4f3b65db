//go:build e2e && linux

package testenv

import (
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/dropless/dropless/pkg/protocol"
)

// TestDiskFullWhileStaging runs the agent under a file-size limit (what a
// full disk looks like to a writer: writes fail) and upgrades to a release
// with a file over it: the job aborts cleanly before the app is stopped,
// the old version keeps running untouched, and the reason says why.
func TestDiskFullWhileStaging(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("prlimit"); err != nil {
		t.Skip("prlimit (util-linux) is not installed")
	}
	env := New(t)
	env.Publish(t, "1.0.0", Healthy)
	// 64 MiB of zeros: a tiny download, a big file to unpack.
	env.PublishFiles(t, "1.1.0", map[string]string{"big.dat": strings.Repeat("\x00", 64<<20)})
	site := env.PrepareSite(t, "acme-prod", "acme")
	site.StartAgentUnder(t, "prlimit", "--fsize=33554432", "--") // 32 MiB per file
	Await(t, "checked in", func() bool { return site.Info(t).LastSeen != nil })
	site.Upgrade(t, "1.0.0")
	site.AwaitHealthy(t, "1.0.0")
	site.AwaitJob(t)

	site.Upgrade(t, "1.1.0")
	j := awaitReason(t, site, "too large")
	if j.Result == protocol.ResultSucceeded || slices.Contains(eventStates(j), "stopping") {
		t.Fatalf("disk full: %s, events %s", j.Result, fmtEvents(j))
	}
	site.AwaitHealthy(t, "1.0.0")
	if st := site.Info(t); st.InstalledVersion != "1.0.0" {
		t.Errorf("installed %q", st.InstalledVersion)
	}
}
