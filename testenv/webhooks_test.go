//go:build e2e && unix

package testenv

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// signedReceiver is a webhook receiver on loopback with its own check of
// the Standard Webhooks signature (written from the specification, not
// shared with the server). While down it answers 503.
type signedReceiver struct {
	t   *testing.T
	URL string

	mu        sync.Mutex
	key       []byte
	down      bool
	attempted map[string]string // webhook-id → event type, every attempt
	delivered map[string]int    // webhook-id → 2xx answers
}

func newSignedReceiver(t *testing.T) *signedReceiver {
	r := &signedReceiver{t: t, attempted: map[string]string{}, delivered: map[string]int{}}
	srv := httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(srv.Close)
	r.URL = srv.URL
	return r
}

func (r *signedReceiver) setSecret(secret string) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil || !strings.HasPrefix(secret, "whsec_") {
		r.t.Fatalf("webhook create printed secret %q: want whsec_ and base64", secret)
	}
	r.mu.Lock()
	r.key = key
	r.mu.Unlock()
}

func (r *signedReceiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	id, ts, sigs := req.Header.Get("webhook-id"), req.Header.Get("webhook-timestamp"), req.Header.Get("webhook-signature")
	r.mu.Lock()
	defer r.mu.Unlock()
	m := hmac.New(sha256.New, r.key)
	m.Write([]byte(id + "." + ts + "." + string(body)))
	want := "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
	sec, err := strconv.ParseInt(ts, 10, 64)
	if id == "" || err != nil || time.Since(time.Unix(sec, 0)).Abs() > 5*time.Minute || !strings.Contains(" "+sigs+" ", " "+want+" ") {
		r.t.Errorf("receiver: a request whose signature does not verify: id=%q ts=%q sig=%q", id, ts, sigs)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var ev struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(body, &ev); err != nil || ev.Type == "" || ev.Text == "" {
		r.t.Errorf("receiver: body %s: want JSON with type and text", body)
	}
	r.attempted[id] = ev.Type
	if r.down {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	r.delivered[id]++
}

func (r *signedReceiver) setDown(down bool) {
	r.mu.Lock()
	r.down = down
	r.mu.Unlock()
}

// TestWebhooksAcrossKill: events happen while the receiver is down; the
// server is killed (SIGKILL) with them undelivered and started again; the
// receiver comes back and gets every event, signed, with the webhook-id
// it saw on the failed attempts before the kill, each once.
func TestWebhooksAcrossKill(t *testing.T) {
	t.Parallel()
	env := New(t)
	rcv := newSignedReceiver(t)
	rcv.setDown(true)
	out := strings.Fields(env.MustCLI(t, "webhook", "create", "--url", rcv.URL))
	if len(out) != 2 {
		t.Fatalf("webhook create printed %q", out)
	}
	rcv.setSecret(out[1])

	env.Publish(t, "1.0.0", Healthy)
	site := env.NewSite(t, "acme-prod", "acme")
	site.Upgrade(t, "1.0.0")
	site.AwaitHealthy(t, "1.0.0")
	site.AwaitJob(t)

	want := []string{"release.published", "job.started", "job.succeeded"}
	var before map[string]string
	Await(t, "an attempt at every event while the receiver is down", func() bool {
		rcv.mu.Lock()
		defer rcv.mu.Unlock()
		return len(rcv.attempted) >= len(want)
	})
	var hooks []struct {
		Pending  int64 `json:"pending"`
		Failures int64 `json:"failures"`
	}
	if err := json.Unmarshal([]byte(env.MustCLI(t, "webhook", "list", "--json")), &hooks); err != nil || len(hooks) != 1 || hooks[0].Pending != int64(len(want)) || hooks[0].Failures == 0 {
		t.Fatalf("webhook list before the kill: %+v %v: want %d pending and failures", hooks, err, len(want))
	}
	env.StopServer(t)
	rcv.mu.Lock()
	before = map[string]string{}
	for id, typ := range rcv.attempted {
		before[id] = typ
	}
	rcv.mu.Unlock()
	rcv.setDown(false)
	env.StartServer(t)

	Await(t, "every event delivered after the restart", func() bool {
		rcv.mu.Lock()
		defer rcv.mu.Unlock()
		return len(rcv.delivered) >= len(want)
	})
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	got := map[string]int{}
	for id, n := range rcv.delivered {
		typ, seen := before[id]
		if !seen {
			t.Errorf("delivered %s (%s) under a webhook-id never attempted before the kill", id, rcv.attempted[id])
		}
		if n != 1 {
			t.Errorf("%s (%s) delivered %d times", id, typ, n)
		}
		got[typ]++
	}
	for _, typ := range want {
		if got[typ] != 1 {
			t.Errorf("%s delivered %d times, want once (delivered: %v)", typ, got[typ], got)
		}
	}
}

// TestMetricsPromtool: a real server after a real job; its /metrics passes
// promtool check metrics and counts the job.
func TestMetricsPromtool(t *testing.T) {
	t.Parallel()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool is not installed (Debian package prometheus; CI installs it)")
	}
	env := New(t)
	env.Publish(t, "1.0.0", Healthy)
	site := env.NewSite(t, "acme-prod", "acme")
	site.Upgrade(t, "1.0.0")
	site.AwaitHealthy(t, "1.0.0")
	site.AwaitJob(t)

	var body []byte
	Await(t, "the job counted", func() bool {
		req, _ := http.NewRequest("GET", env.URL+"/metrics", nil)
		req.Header.Set("Authorization", "Bearer "+env.Admin)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ = io.ReadAll(resp.Body)
		return resp.StatusCode == 200 && strings.Contains(string(body), `updateserver_jobs_ended_total{result="succeeded"} 1`)
	})
	for _, line := range []string{`updateserver_sites{product="` + Product + `",state="idle",version="1.0.0"} 1`, `updateserver_sites_online{product="` + Product + `"} 1`, "updateserver_job_duration_seconds_count 1"} {
		if !strings.Contains(string(body), line+"\n") {
			t.Errorf("/metrics lacks %q", line)
		}
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(string(body))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}
