package cli_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/notify"
)

// hookReceiver is a real receiver on loopback: it verifies each request's
// Standard Webhooks signature with the secret webhook create printed.
type hookReceiver struct {
	t      *testing.T
	URL    string
	secret string
	mu     sync.Mutex
	got    map[string]notify.Event // by webhook-id
	order  []string                // types in arrival order
}

func newHookReceiver(t *testing.T) *hookReceiver {
	r := &hookReceiver{t: t, got: map[string]notify.Event{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		if err := notify.Verify(r.secret, req.Header, body, time.Now(), 5*time.Minute); err != nil {
			t.Errorf("receiver: %v", err)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var e notify.Event
		if err := json.Unmarshal(body, &e); err != nil {
			t.Errorf("receiver: %v", err)
		}
		if _, dup := r.got[req.Header.Get(notify.HeaderID)]; !dup {
			r.order = append(r.order, e.Type)
		}
		r.got[req.Header.Get(notify.HeaderID)] = e
	}))
	t.Cleanup(srv.Close)
	r.URL = srv.URL
	return r
}

func (r *hookReceiver) types() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.order...)
}

func (r *hookReceiver) find(typ string) (notify.Event, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.got {
		if e.Type == typ {
			return e, true
		}
	}
	return notify.Event{}, false
}

// TestWebhooks: an admin creates a webhook; releases and a job reach the
// receiver signed, each once, with a text line; list shows the delivery
// and never the secret; only an admin may; create and delete are audited.
func TestWebhooks(t *testing.T) {
	s := startServer(t)
	rcv := newHookReceiver(t)
	out := s.mustCLI(s.Admin, "webhook", "create", "--url", rcv.URL)
	lines := strings.Fields(out)
	if len(lines) != 2 || !strings.HasPrefix(lines[1], "whsec_") {
		t.Fatalf("webhook create printed %q: want the ID and a whsec_ secret", out)
	}
	rcv.mu.Lock()
	rcv.secret = lines[1]
	rcv.mu.Unlock()
	releasesOnly := newHookReceiver(t)
	releasesOnly.secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	s.mustCLI(s.Admin, "webhook", "create", "--url", releasesOnly.URL, "--events", "release.*", "--secret", releasesOnly.secret)

	s.publish(t, "1.0.0", "")
	s.publish(t, "1.1.0", ">= 1.0")
	s.mustCLI(s.Admin, "release", "promote", "--product", "acme-erp", "--version", "1.1.0", "--channel", "stable")
	s.mustCLI(s.Admin, "release", "yank", "--product", "acme-erp", "--version", "1.0.0", "--reason", "<!channel> broken")

	support := s.newToken(protocol.RoleSupport)
	a := s.idleOn(t, support, "acme-prod", "1.0.0")
	ctx := context.Background()
	s.mustCLI(support, "upgrade", "--site", "acme-prod", "--to", "1.1.0", "--now")
	job := s.history(t, support, "acme-prod")[0].ID
	if _, err := a.SendEvents(ctx, []protocol.Event{{JobID: job, Seq: 1, State: "downloading", At: time.Now()},
		{JobID: job, Seq: 2, State: "stopping", At: time.Now()}, {JobID: job, Seq: 3, State: "rolled_back", Message: "health check failed", At: time.Now()}}); err != nil {
		t.Fatal(err)
	}

	want := []string{"release.published", "release.published", "release.promoted", "release.yanked", "job.started", "job.rolled_back"}
	waitFor(t, func() bool { return len(rcv.types()) >= len(want) })
	if got := rcv.types(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("the receiver got %v, want %v (in order, each once)", got, want)
	}
	waitFor(t, func() bool { return len(releasesOnly.types()) >= 4 })
	if got := releasesOnly.types(); len(got) != 4 || !strings.HasPrefix(got[0], "release.") || !strings.HasPrefix(got[3], "release.") {
		t.Errorf("a release.* webhook got %v", got)
	}
	rb, _ := rcv.find("job.rolled_back")
	if !strings.Contains(rb.Text, "acme-prod") || !strings.Contains(rb.Text, "rolled back") || !strings.Contains(rb.Text, "health check failed") {
		t.Errorf("job.rolled_back text %q: want the site, what happened and why", rb.Text)
	}
	if y, _ := rcv.find("release.yanked"); !strings.Contains(y.Text, "&lt;!channel&gt; broken") {
		t.Errorf("release.yanked text %q: want the reason with Slack's control characters escaped", y.Text)
	}

	var hooks []protocol.Webhook
	listed := s.mustCLI(s.Admin, "webhook", "list", "--json")
	if err := json.Unmarshal([]byte(listed), &hooks); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(listed, "whsec_") || strings.Contains(s.mustCLI(s.Admin, "webhook", "list"), "whsec_") {
		t.Error("webhook list shows a secret")
	}
	waitFor(t, func() bool {
		json.Unmarshal([]byte(s.mustCLI(s.Admin, "webhook", "list", "--json")), &hooks)
		return len(hooks) == 2 && hooks[0].LastStatus == "200" && hooks[0].Pending == 0
	})
	if hooks[1].Events[0] != "release.*" {
		t.Errorf("list = %+v", hooks)
	}

	for _, tt := range []struct {
		token string
		args  []string
		code  int
		want  string
	}{
		{support, []string{"--url", rcv.URL}, 1, "needs the admin role"},
		{s.Admin, []string{"--url", "ftp://example.com/"}, 1, "http:// or https://"},
		{s.Admin, []string{"--url", "https://user:pw@example.com/"}, 1, "user name or password"},
		{s.Admin, []string{"--url", rcv.URL, "--events", "jobs.*"}, 1, "unknown"},
		{s.Admin, []string{"--url", rcv.URL, "--secret", "c2VjcmV0"}, 2, "whsec_"},
		{s.Admin, []string{"--url", rcv.URL, "--secret", "whsec_c2hvcnQ="}, 1, "24 to 64"},
		{s.Admin, []string{"--events", "job.*"}, 2, "--url"},
	} {
		if r := s.cli(tt.token, append([]string{"webhook", "create"}, tt.args...)...); r.code != tt.code || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("webhook create %v: exit %d %q, want %d and %q", tt.args, r.code, r.stderr, tt.code, tt.want)
		}
	}
	for _, args := range [][]string{{"list"}, {"delete", "1"}} {
		if r := s.cli(support, append([]string{"webhook"}, args...)...); r.code != 1 || !strings.Contains(r.stderr, "needs the admin role") {
			t.Errorf("webhook %v as support: exit %d %q", args, r.code, r.stderr)
		}
	}
	s.mustCLI(s.Admin, "webhook", "delete", "2")
	if r := s.cli(s.Admin, "webhook", "delete", "2"); r.code != 1 || !strings.Contains(r.stderr, "no webhook has ID 2") {
		t.Errorf("deleting it again: exit %d %q", r.code, r.stderr)
	}
	audit := actions(s.auditJSON(t, "--json"))
	if !contains(audit, "webhook.create webhook 1") || !contains(audit, "webhook.delete webhook 2") {
		t.Errorf("audit %v: want webhook.create and webhook.delete", audit)
	}
}

// TestRolloutWebhooks: a rollout's life reaches a rollout.* webhook: it
// started, its wave started, it paused itself when its site rolled back
// (the andon cord, with the site and why in the text), it was cancelled.
func TestRolloutWebhooks(t *testing.T) {
	s := startServer(t)
	rcv := newHookReceiver(t)
	rcv.secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	s.mustCLI(s.Admin, "webhook", "create", "--url", rcv.URL, "--events", "rollout.*", "--secret", rcv.secret)
	s.publish(t, "1.0.0", "")
	s.publish(t, "1.1.0", ">= 1.0")
	support := s.newToken(protocol.RoleSupport)
	a := s.idleOn(t, support, "acme-prod", "1.0.0")
	ctx := context.Background()
	id := strings.TrimSpace(s.mustCLI(support, "rollout", "create", "--product", "acme-erp", "--version", "1.1.0", "--site", "acme-prod"))
	var job string
	waitFor(t, func() bool {
		if h := s.history(t, support, "acme-prod"); len(h) > 0 {
			job = h[0].ID
		}
		return job != ""
	})
	if _, err := a.SendEvents(ctx, []protocol.Event{{JobID: job, Seq: 1, State: "downloading", At: time.Now()},
		{JobID: job, Seq: 2, State: "rolled_back", Message: "health check failed", At: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return len(rcv.types()) >= 3 })
	s.mustCLI(support, "rollout", "cancel", id)
	want := []string{"rollout.started", "rollout.wave_started", "rollout.paused", "rollout.cancelled"}
	waitFor(t, func() bool { return len(rcv.types()) >= len(want) })
	if got := rcv.types(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("the receiver got %v, want %v (in order, each once)", got, want)
	}
	if p, _ := rcv.find("rollout.paused"); !strings.Contains(p.Text, "PAUSED") || !strings.Contains(p.Text, "acme-prod") || !strings.Contains(p.Text, "health check failed") {
		t.Errorf("rollout.paused text %q: want PAUSED, the failed site and why", p.Text)
	}
	m := s.scrape(t, support)
	if m[`updateserver_rollouts{state=cancelled}`] != 1 || m[`updateserver_rollouts{state=running}`] != 0 || m[`updateserver_rollout_failures{state=cancelled}`] != 1 {
		t.Errorf("/metrics rollouts: cancelled %v running %v, failures of cancelled %v; want 1, 0, 1",
			m[`updateserver_rollouts{state=cancelled}`], m[`updateserver_rollouts{state=running}`], m[`updateserver_rollout_failures{state=cancelled}`])
	}
}
