package api_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
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

// BenchmarkCheckinIdle measures the check-in hot path: agents of 1000
// enrolled sites checking in without ?wait and reporting nothing new,
// through the whole API handler (authentication, limits, decoding, the
// fleet, encoding), as ../shared/perf/checkin-throughput drives it over
// HTTP.
func BenchmarkCheckinIdle(b *testing.B) {
	fx := checkinFixture(b)
	do, creds, body := fx.do, fx.creds, fx.body
	const agents = len(fx.creds)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			if w := do("POST", "/api/v1/agent/checkin", creds[i%agents], body); w.Code != http.StatusOK {
				b.Fatalf("check-in: %d %s", w.Code, w.Body)
			}
		}
	})
}

// idleFixture is a server with 1000 enrolled agents that each checked in
// once, made once for every run of the benchmark (its function runs for
// each b.N).
type idleFixture struct {
	do    func(method, path, token, body string) *httptest.ResponseRecorder
	creds [1000]string
	body  string
	close func()
}

// TestMain removes the benchmark's fixture after the run.
func TestMain(m *testing.M) {
	code := m.Run()
	if idleFx != nil {
		idleFx.close()
	}
	os.Exit(code)
}

var (
	idleOnce sync.Once
	idleFx   *idleFixture
)

func checkinFixture(tb testing.TB) *idleFixture {
	idleOnce.Do(func() { idleFx = newIdleFixture(tb) })
	if idleFx == nil {
		tb.Fatal("no fixture")
	}
	return idleFx
}

func newIdleFixture(tb testing.TB) *idleFixture {

	dir, _ := os.MkdirTemp("", "bench-checkin")
	d, err := daemon.Open(context.Background(), daemon.Config{
		DataDir: filepath.Join(dir, "data"), Listen: "127.0.0.1:0", MaxBundleSize: 1 << 20,
		Expiry: tufrepo.DefaultExpiry(), RefreshInterval: time.Hour, PollInterval: time.Second, JobTimeout: time.Hour,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		tb.Fatal(err)
	}
	tok, _ := os.ReadFile(filepath.Join(dir, "data", "admin.token"))
	h := (&api.Server{Store: d.Store, Publisher: d.Publisher, Fleet: d.Fleet, Log: slog.New(slog.DiscardHandler)}).Handler()
	do := func(method, path, token, body string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w
	}
	const agents = 1000
	w := do("POST", "/api/v1/enroll-tokens", strings.TrimSpace(string(tok)), fmt.Sprintf(`{"client":"acme","uses":%d}`, agents))
	if w.Code != http.StatusCreated {
		tb.Fatalf("enroll token: %d %s", w.Code, w.Body)
	}
	var et protocol.CreateEnrollTokenResponse
	jsonUnmarshal(tb, w.Body.Bytes(), &et)
	fx := &idleFixture{}
	creds := fx.creds[:]
	for i := range creds {
		w := do("POST", "/api/v1/agent/enroll", "", fmt.Sprintf(`{"token":%q,"site":"site-%04d","client":"acme","product":"p"}`, et.Token, i))
		var er protocol.EnrollResponse
		if w.Code != http.StatusCreated {
			tb.Fatalf("enroll: %d %s", w.Code, w.Body)
		}
		jsonUnmarshal(tb, w.Body.Bytes(), &er)
		creds[i] = er.Credential
	}
	const body = `{"installed_version":"1.0.0","state":"idle"}`
	for _, c := range creds { // the first report of each is written
		if w := do("POST", "/api/v1/agent/checkin", c, body); w.Code != http.StatusOK {
			tb.Fatalf("check-in: %d %s", w.Code, w.Body)
		}
	}
	fx.do, fx.body = do, body
	fx.close = func() {
		d.Close()
		os.RemoveAll(dir)
	}
	return fx
}

// TestReenrolledCredentialRefusedAtOnce: an agent's credential, just used
// for a check-in, is refused on its next one once the site is enrolled
// again; the new credential works, and an unchanged check-in still
// answers the site's fresh last_seen.
func TestReenrolledCredentialRefusedAtOnce(t *testing.T) {
	s := startHTTP(t)
	ctx := context.Background()
	idle := protocol.CheckinRequest{State: "idle", InstalledVersion: "1.0.0"}
	for range 2 {
		if _, err := s.A.Checkin(ctx, idle, 0); err != nil {
			t.Fatal(err)
		}
	}
	code, body, _ := s.call(t, "POST", "/api/v1/enroll-tokens", s.Admin, `{"client":"acme","site":"site-0","replace":true}`)
	if code != 201 {
		t.Fatalf("enroll token: %d %s", code, body)
	}
	var et protocol.CreateEnrollTokenResponse
	jsonUnmarshal(t, body, &et)
	old := s.A.Credential
	fresh := agentapi.New(s.URL)
	if _, err := fresh.Enroll(ctx, protocol.EnrollRequest{Token: et.Token, Site: "site-0", Client: "acme", Product: "p"}); err != nil {
		t.Fatal(err)
	}
	code, body, _ = s.call(t, "POST", "/api/v1/agent/checkin", old, `{"state":"idle","installed_version":"1.0.0"}`)
	if code != http.StatusUnauthorized {
		t.Errorf("old credential after re-enrollment: %d %s, want 401", code, body)
	}
	if _, err := fresh.Checkin(ctx, idle, 0); err != nil {
		t.Fatalf("new credential: %v", err)
	}
	// The second check-in changes nothing: not written, yet answered.
	before := time.Now()
	if _, err := fresh.Checkin(ctx, idle, 0); err != nil {
		t.Fatalf("new credential: %v", err)
	}
	code, body, _ = s.call(t, "GET", "/api/v1/sites/site-0", s.Admin, "")
	var st protocol.Site
	jsonUnmarshal(t, body, &st)
	if code != 200 || st.LastSeen == nil || st.LastSeen.Before(before) {
		t.Errorf("site after the new agent's check-in: %d last_seen %v, want at or after %s", code, st.LastSeen, before)
	}
}
