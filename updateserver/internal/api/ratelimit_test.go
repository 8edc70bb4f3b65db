package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/agentapi"
	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/api"
	"github.com/dropless/dropless/updateserver/internal/daemon"
	"github.com/dropless/dropless/updateserver/internal/tufrepo"
)

// lockedBuffer is a log sink safe for concurrent handlers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// httpServer is the API on a real loopback HTTP server with two enrolled
// agents; its log goes to log.
type httpServer struct {
	URL    string
	Admin  string
	A, B   *agentapi.Client
	log    *lockedBuffer
	client *http.Client
}

func startHTTP(t *testing.T) *httpServer {
	t.Helper()
	dir := t.TempDir()
	d, err := daemon.Open(context.Background(), daemon.Config{
		DataDir: filepath.Join(dir, "data"), Listen: "127.0.0.1:0", MaxBundleSize: 1 << 20,
		Expiry: tufrepo.DefaultExpiry(), RefreshInterval: time.Hour, PollInterval: time.Second, JobTimeout: time.Hour,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	tok, _ := os.ReadFile(filepath.Join(dir, "data", "admin.token"))
	log := &lockedBuffer{}
	h := (&api.Server{Store: d.Store, Publisher: d.Publisher, Fleet: d.Fleet, Log: slog.New(slog.NewTextHandler(log, nil))}).Handler()
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	s := &httpServer{URL: ts.URL, Admin: strings.TrimSpace(string(tok)), log: log, client: ts.Client()}
	code, body, _ := s.call(t, "POST", "/api/v1/enroll-tokens", s.Admin, `{"client":"acme","uses":2}`)
	if code != 201 {
		t.Fatalf("enroll token: %d %s", code, body)
	}
	var et protocol.CreateEnrollTokenResponse
	jsonUnmarshal(t, body, &et)
	for i, c := range []**agentapi.Client{&s.A, &s.B} {
		*c = agentapi.New(ts.URL)
		if _, err := (*c).Enroll(context.Background(), protocol.EnrollRequest{Token: et.Token, Site: fmt.Sprintf("site-%d", i), Client: "acme", Product: "p"}); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func (s *httpServer) call(t *testing.T, method, path, token, body string) (int, []byte, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, s.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header
}

// wantTooMany checks a 429: Retry-After in whole seconds and a JSON error.
func wantTooMany(t *testing.T, what string, code int, body []byte, h http.Header) {
	t.Helper()
	if code != http.StatusTooManyRequests {
		t.Fatalf("%s: %d %s, want 429", what, code, body)
	}
	if n, err := strconv.Atoi(h.Get("Retry-After")); err != nil || n < 1 {
		t.Errorf("%s: Retry-After %q", what, h.Get("Retry-After"))
	}
	var er protocol.ErrorResponse
	if json.Unmarshal(body, &er) != nil || er.Error.Code != protocol.CodeTooManyRequests || !strings.Contains(er.Error.Message, "try again in") {
		t.Errorf("%s: body %s", what, body)
	}
}

// TestFailedAuthenticationIsLimited: a source sending bad credentials is
// answered 429 past its limit, and logged once, not once per attempt;
// good agents and operators on the same address (one NAT) keep working.
func TestFailedAuthenticationIsLimited(t *testing.T) {
	s := startHTTP(t)
	limit := api.DefaultLimits.AuthFailures.Burst
	var code int
	var body []byte
	var h http.Header
	n := 0
	for n = 1; n <= 3*limit; n++ {
		code, body, h = s.call(t, "POST", "/api/v1/agent/checkin", fmt.Sprintf("dla_forged%d", n), `{"state":"idle"}`)
		if code == http.StatusTooManyRequests {
			break
		}
		if code != http.StatusUnauthorized {
			t.Fatalf("bad credential %d: %d %s", n, code, body)
		}
	}
	if n < limit {
		t.Errorf("refused after %d failures, before the limit of %d", n, limit)
	}
	wantTooMany(t, fmt.Sprintf("bad credential %d", n), code, body, h)
	// A bad operator token from there too.
	code, body, h = s.call(t, "GET", "/api/v1/sites", "dlo_forged", "")
	wantTooMany(t, "bad operator token", code, body, h)

	// The good ones on the same address are served.
	if _, err := s.A.Checkin(context.Background(), protocol.CheckinRequest{State: "idle"}, 0); err != nil {
		t.Errorf("good agent on the same address: %v", err)
	}
	if code, body, _ := s.call(t, "GET", "/api/v1/sites", s.Admin, ""); code != 200 {
		t.Errorf("good operator on the same address: %d %s", code, body)
	}
	if lines := strings.Count(s.log.String(), "authentication refused"); lines != 1 {
		t.Errorf("%d log lines about refused authentication for one source within a minute, want 1:\n%s", lines, s.log.String())
	}
}

// TestCheckinsPerCredentialAreLimited: one credential reporting a change
// on every check-in without pause (each one a write) is answered 429 past
// its burst; another agent is not affected. Check-ins that change
// nothing cost no write and are not charged: an agent may repeat them.
func TestCheckinsPerCredentialAreLimited(t *testing.T) {
	s := startHTTP(t)
	ctx := context.Background()
	burst := api.DefaultLimits.Checkins.Burst
	for n := 1; n <= 3*burst; n++ {
		if _, err := s.A.Checkin(ctx, protocol.CheckinRequest{State: "idle", InstalledVersion: "1.0.0"}, 0); err != nil {
			t.Fatalf("unchanged check-in %d: %v, want it served (it writes nothing)", n, err)
		}
	}
	var err error
	n := 0
	for n = 1; n <= 3*burst; n++ {
		if _, err = s.A.Checkin(ctx, protocol.CheckinRequest{State: "idle", InstalledVersion: fmt.Sprintf("1.0.%d", n)}, 0); err != nil {
			break
		}
	}
	var ae *agentapi.Error
	if n < burst || !asAgentErr(err, &ae) || ae.Status != http.StatusTooManyRequests || ae.Code != protocol.CodeTooManyRequests {
		t.Fatalf("check-in %d: %v, want 429 after %d", n, err, burst)
	}
	code, body, h := s.call(t, "POST", "/api/v1/agent/checkin", s.A.Credential, `{"state":"idle","installed_version":"2.0.0"}`)
	wantTooMany(t, "check-in past the limit", code, body, h)
	if _, err := s.B.Checkin(ctx, protocol.CheckinRequest{State: "idle"}, 0); err != nil {
		t.Errorf("another agent: %v", err)
	}
}

func asAgentErr(err error, ae **agentapi.Error) bool {
	for err != nil {
		if e, ok := err.(*agentapi.Error); ok {
			*ae = e
			return true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = u.Unwrap()
	}
	return false
}

// TestAgentInputIsValidated: a check-in or event outside the protocol is
// refused with 400 naming the field (never a 500 from the database), and
// free text an agent sends is kept bounded, its control characters
// escaped.
func TestAgentInputIsValidated(t *testing.T) {
	s := startHTTP(t)
	tests := []struct {
		name, path, body, field string
	}{
		{"unknown job result", "checkin", `{"state":"idle","job":{"job_id":"job-1","result":"exploded"}}`, "job.result"},
		{"unknown state", "checkin", `{"state":"<img src=x onerror=alert(1)>"}`, "state"},
		{"unknown job state", "checkin", `{"state":"idle","job":{"job_id":"job-1","state":"dancing"}}`, "job.state"},
		{"job without ID", "checkin", `{"state":"idle","job":{"result":"failed"}}`, "job.job_id"},
		{"control character in hostname", "checkin", `{"state":"idle","hostname":"a\u001b[2Jb"}`, "hostname"},
		{"long hostname", "checkin", `{"state":"idle","hostname":"` + strings.Repeat("h", 300) + `"}`, "hostname"},
		{"long agent version", "checkin", `{"state":"idle","agent_version":"` + strings.Repeat("1", 200) + `"}`, "agent_version"},
		{"not a version", "checkin", `{"state":"idle","installed_version":"1.0; DROP TABLE"}`, "installed_version"},
		{"not a version either", "checkin", `{"state":"idle","installed_version":"banana"}`, "installed_version"},
		{"too many drift lines", "checkin", `{"state":"idle","drift":[` + strings.TrimSuffix(strings.Repeat(`"x",`, 1001), ",") + `]}`, "drift"},
		{"long drift line", "checkin", `{"state":"idle","drift":["` + strings.Repeat("d", 9000) + `"]}`, "drift[0]"},
		{"unknown event state", "events", `{"events":[{"job_id":"job-1","seq":1,"state":"exploded","at":"2026-01-01T00:00:00Z"}]}`, "events[0].state"},
		{"event seq 0", "events", `{"events":[{"job_id":"job-1","seq":0,"state":"failed","at":"2026-01-01T00:00:00Z"}]}`, "events[0].seq"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := s.A
			if i%2 == 1 {
				a = s.B // two credentials: stay under the check-in limit
			}
			code, body, _ := s.call(t, "POST", "/api/v1/agent/"+tt.path, a.Credential, tt.body)
			var er protocol.ErrorResponse
			json.Unmarshal(body, &er)
			if code != http.StatusBadRequest || !strings.HasPrefix(er.Error.Message, "check-in "+tt.field+":") && !strings.HasPrefix(er.Error.Message, tt.field+":") {
				t.Errorf("%d %s, want 400 naming %s", code, body, tt.field)
			}
		})
	}

	// What a real agent may send from an odd site is kept, bounded.
	drift := []string{"<img src=x onerror=alert(1)>", "modified: a\x1b[31mb.dll", "modified: " + strings.Repeat("long/", 300)}
	for i := range 150 {
		drift = append(drift, fmt.Sprintf("added: f%d.dll", i))
	}
	if _, err := s.A.Checkin(context.Background(), protocol.CheckinRequest{InstalledVersion: "1.0.0", State: "idle", Drift: drift}, 0); err != nil {
		t.Fatal(err)
	}
	code, body, _ := s.call(t, "GET", "/api/v1/sites/site-0", s.Admin, "")
	var st protocol.Site
	if code != 200 || json.Unmarshal(body, &st) != nil {
		t.Fatalf("site: %d %s", code, body)
	}
	if len(st.Drift) != protocol.KeepDriftLines || st.Drift[len(st.Drift)-1] != "... and 54 more changes" {
		t.Errorf("%d drift lines kept, the last %q", len(st.Drift), st.Drift[len(st.Drift)-1])
	}
	if st.Drift[0] != drift[0] || st.Drift[1] != `modified: a\x1b[31mb.dll` || len(st.Drift[2]) > protocol.KeepDriftLine || !strings.Contains(st.Drift[2], "(truncated, 1510 bytes)") {
		t.Errorf("drift kept as %q", st.Drift[:3])
	}
}

// TestOneEventBatchAtATime: while one batch of a site's events is being
// received, another batch of the same site is answered 429 (an agent
// sends one at a time; parallel batches would all sit in memory), and
// other sites are not affected.
func TestOneEventBatchAtATime(t *testing.T) {
	s := startHTTP(t)
	// A batch whose body arrives slowly: the server holds it in flight.
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", s.URL+"/api/v1/agent/events", pr)
	req.Header.Set("Authorization", "Bearer "+s.A.Credential)
	slow := make(chan int, 1)
	go func() {
		resp, err := s.client.Do(req)
		if err != nil {
			slow <- 0
			return
		}
		resp.Body.Close()
		slow <- resp.StatusCode
	}()
	pw.Write([]byte(`{"events":[`))
	var code int
	var body []byte
	var h http.Header
	for range 200 {
		code, body, h = s.call(t, "POST", "/api/v1/agent/events", s.A.Credential, `{"events":[]}`)
		if code == http.StatusTooManyRequests {
			break
		}
		time.Sleep(10 * time.Millisecond) // until the slow batch is in the handler
	}
	wantTooMany(t, "a second batch in parallel", code, body, h)
	if !strings.Contains(string(body), "already sending a batch of events") {
		t.Errorf("refused for another reason: %s", body)
	}
	if code, body, _ := s.call(t, "POST", "/api/v1/agent/events", s.B.Credential, `{"events":[]}`); code != 200 {
		t.Errorf("another site's batch: %d %s", code, body)
	}
	pw.Write([]byte(`]}`))
	pw.Close()
	if c := <-slow; c != 200 {
		t.Errorf("the slow batch: %d", c)
	}
	if code, body, _ := s.call(t, "POST", "/api/v1/agent/events", s.A.Credential, `{"events":[]}`); code != 200 {
		t.Errorf("the next batch after it: %d %s", code, body)
	}
}
