//go:build unix

package runner

import (
	"os"
	"strings"
	"testing"

	"github.com/dropless/dropless/agent/internal/selfupdate"
	"github.com/dropless/dropless/pkg/protocol"
)

// TestSelfUpdateRefusedLeavesTheAgentAlone: an assignment of the agent
// itself whose signed target is the app's (a lying server) ends failed
// with the trust refusal, before anything is staged or swapped; the
// agent's executable is untouched and the app's next job runs.
func TestSelfUpdateRefusedLeavesTheAgentAlone(t *testing.T) {
	srv := newAgentServer(t, "tok-1")
	site := newAgentSite(t, srv, "tok-1")
	exe, err := executable()
	if err != nil {
		t.Fatal(err)
	}
	before, err := selfupdate.FileSHA256(exe)
	if err != nil {
		t.Fatal(err)
	}
	a := site.release(t, "2.0.0") // signed as the app
	a.JobID, a.Product = "job-agent", "updateagent"
	srv.assign(a)
	site.start(t)
	var js *protocol.JobStatus
	await(t, "the self-update to end", func() bool { js = site.ended(t, "job-agent"); return js != nil })
	st, _ := site.status(t)
	if js.Result != protocol.ResultFailed || !strings.Contains(st.LastError, `is of product "`+product+`"`) {
		t.Fatalf("self-update of an app target: %+v, %q", js, st.LastError)
	}
	if _, err := os.Stat(selfupdate.Dir(site.cfg.DataDir)); err == nil {
		t.Error("a refused self-update left files in data_dir/selfupdate")
	}
	if after, _ := selfupdate.FileSHA256(exe); after != before {
		t.Fatal("a refused self-update changed the agent's executable")
	}
	srv.assign(site.release(t, "1.0.0"))
	await(t, "the app's job after it", func() bool { js = site.ended(t, "job-1.0.0"); return js != nil })
	if js.Result != protocol.ResultSucceeded || site.running() != "1.0.0" {
		t.Fatalf("the app's job after a refused self-update: %+v, running %q", js, site.running())
	}
}
