//go:build e2e && unix

package testenv

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/dropless/dropless/pkg/protocol"
)

// TestAgentMovesToItsNextServer: an agent given two servers (servers =
// [A, B]) talks to A; when A is killed (SIGKILL) it moves on to B, gets
// the upgrade made through B, reads the TUF metadata and the bundle from
// B (A is gone: they cannot come from A), and completes the job there.
//
// The two servers are real: B serves a copy of A's data directory (same
// keys, repository, site credentials), as a replica on a shared store
// would.
func TestAgentMovesToItsNextServer(t *testing.T) {
	t.Parallel()
	a := New(t)
	a.Publish(t, "1.0.0", Healthy)
	a.Publish(t, "1.1.0", Healthy)
	bListen := freeAddr(t)
	bURL := "http://" + bListen
	site := a.PrepareSite(t, "multi", "acme")
	cfg, err := os.ReadFile(site.Config)
	if err != nil {
		t.Fatal(err)
	}
	serverLine := regexp.MustCompile(`(?m)^server = .*$`)
	cfg = serverLine.ReplaceAll(cfg, []byte(`servers = ["`+a.URL+`", "`+bURL+`/"]`))
	if err := os.WriteFile(site.Config, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	site.StartAgent(t)
	// As NewSite does: upgrading a site before its agent enrolled is refused.
	Await(t, "site multi checked in", func() bool { return site.Info(t).LastSeen != nil })
	site.Upgrade(t, "1.0.0")
	site.AwaitHealthy(t, "1.0.0")
	if j := site.AwaitJob(t); j.Result != protocol.ResultSucceeded {
		t.Fatalf("first job through A: %+v", j)
	}

	// A dies; B starts on a copy of its data.
	a.StopServer(t)
	b := *a
	b.Data = filepath.Join(a.Dir, "server-b")
	copyDir(t, a.Data, b.Data)
	b.URL = bURL
	b.server = Start(t, "updateserver-b", filepath.Join(a.Dir, "server-b.log"), nil, a.Bin.Server,
		"serve", "--data", b.Data, "--listen", bListen, "--poll-interval", "2s")
	b.awaitServer(t)
	bSite := *site
	bSite.env = &b

	bSite.Upgrade(t, "1.1.0")
	bSite.AwaitHealthy(t, "1.1.0")
	j := bSite.AwaitJob(t)
	if j.To != "1.1.0" || j.Result != protocol.ResultSucceeded {
		t.Fatalf("job through B: %+v", j)
	}
	log, _ := os.ReadFile(filepath.Join(site.Dir, "agent.log"))
	if !strings.Contains(string(log), "moving on to the next one") {
		t.Fatalf("the agent's log does not say it moved on to B:\n%s", tail(log, 30))
	}
}

func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if fi.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), fi.Mode().Perm())
		}
		copyFile(t, p, filepath.Join(dst, rel), fi.Mode().Perm())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
