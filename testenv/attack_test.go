//go:build e2e && unix

package testenv

import (
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/dropless/dropless/pkg/protocol"
)

// hostileMirror serves the real server's repository but alters what
// alter says, in front of the agent.
func hostileMirror(t *testing.T, env *Env, alter func(path string, body []byte) []byte) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp, err := http.Get(env.URL + r.URL.Path)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode == 200 {
			b = alter(r.URL.Path, b)
		}
		w.WriteHeader(resp.StatusCode)
		w.Write(b)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestUpgradeRefusesAlteredTarget: a mirror that alters the bundle in
// transit cannot get it installed; the job fails before the app is
// stopped, the old version keeps running, and the reason is in the job's
// events.
func TestUpgradeRefusesAlteredTarget(t *testing.T) {
	t.Parallel()
	env := New(t)
	env.Publish(t, "1.0.0", Healthy)
	env.Publish(t, "1.1.0", Healthy)
	mirror := hostileMirror(t, env, func(path string, b []byte) []byte {
		if strings.Contains(path, "sampleapp-1.1.0") && len(b) > 100 {
			b = slices.Clone(b)
			b[len(b)/2] ^= 0xff
		}
		return b
	})
	site := env.NewSite(t, "acme-prod", "acme", `targets_url = "`+mirror+`/tuf/targets/"`)
	site.Upgrade(t, "1.0.0")
	site.AwaitHealthy(t, "1.0.0")
	site.AwaitJob(t)

	site.Upgrade(t, "1.1.0")
	j := awaitReason(t, site, "sha256 mismatch")
	if states := eventStates(j); j.Result != protocol.ResultFailed || slices.Contains(states, "stopping") {
		t.Fatalf("altered bundle: %s, events %v", j.Result, states)
	}
	site.AwaitHealthy(t, "1.0.0")
}

// TestUpgradeRefusesEndlessTarget: a mirror that sends more than the
// signed length is cut off at it.
func TestUpgradeRefusesEndlessTarget(t *testing.T) {
	t.Parallel()
	env := New(t)
	env.Publish(t, "1.0.0", Healthy)
	env.Publish(t, "1.1.0", Healthy)
	mirror := hostileMirror(t, env, func(path string, b []byte) []byte {
		if strings.Contains(path, "sampleapp-1.1.0") {
			return append(b, make([]byte, 4<<20)...)
		}
		return b
	})
	site := env.NewSite(t, "acme-prod", "acme", `targets_url = "`+mirror+`/tuf/targets/"`)
	site.Upgrade(t, "1.0.0")
	site.AwaitHealthy(t, "1.0.0")
	site.AwaitJob(t)
	site.Upgrade(t, "1.1.0")
	j := awaitReason(t, site, "length")
	if j.Result != protocol.ResultFailed || slices.Contains(eventStates(j), "stopping") {
		t.Fatalf("endless target: %s %q %s", j.Result, j.Reason, fmtEvents(j))
	}
	site.AwaitHealthy(t, "1.0.0")
}

// awaitReason waits until the site's newest job has ended with a reason
// (or failed event) containing want: events may trail the check-in that
// ended the job.
func awaitReason(t *testing.T, site *Site, want string) protocol.Job {
	t.Helper()
	site.AwaitJob(t)
	var j protocol.Job
	Await(t, "a job reason naming "+want, func() bool {
		j = site.History(t)[0]
		return strings.Contains(j.Reason+fmtEvents(j), want)
	})
	return j
}

// TestUpgradeRefusesReplayedMetadata: a mirror that replays an older
// timestamp (a rollback attack, or a freeze on old metadata) after the
// agent has seen a newer one cannot get the agent to act on it: the job
// fails before the app is stopped and says why.
func TestUpgradeRefusesReplayedMetadata(t *testing.T) {
	t.Parallel()
	env := New(t)
	env.Publish(t, "1.0.0", Healthy)
	var (
		mu     sync.Mutex
		stale  []byte
		replay atomic.Bool
	)
	mirror := hostileMirror(t, env, func(path string, b []byte) []byte {
		if strings.HasSuffix(path, "/timestamp.json") {
			mu.Lock()
			defer mu.Unlock()
			if stale == nil {
				stale = slices.Clone(b)
			}
			if replay.Load() {
				return stale
			}
		}
		return b
	})
	site := env.NewSite(t, "acme-prod", "acme", `metadata_url = "`+mirror+`/tuf/metadata/"`)
	site.Upgrade(t, "1.0.0")
	site.AwaitHealthy(t, "1.0.0")
	site.AwaitJob(t)

	// A new release moves the timestamp on; the agent trusts the newer
	// one once it has seen it (the install of 1.0.0 fetched the first).
	env.Publish(t, "1.1.0", Healthy)
	env.Publish(t, "1.2.0", Healthy)
	site.Upgrade(t, "1.1.0")
	site.AwaitHealthy(t, "1.1.0")
	site.AwaitJob(t)
	replay.Store(true) // from now on, the timestamp of before 1.1.0
	site.Upgrade(t, "1.2.0")
	j := awaitReason(t, site, "rollback")
	if j.Result != protocol.ResultFailed || slices.Contains(eventStates(j), "stopping") {
		t.Fatalf("replayed timestamp: %s %q %s", j.Result, j.Reason, fmtEvents(j))
	}
	site.AwaitHealthy(t, "1.1.0")
}
