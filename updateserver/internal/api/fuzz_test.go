package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/dropless/dropless/pkg/bundle"
	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/api"
	"github.com/dropless/dropless/updateserver/internal/daemon"
	"github.com/dropless/dropless/updateserver/internal/tufrepo"
)

// FuzzRequestBodies sends arbitrary bodies to every endpoint that takes
// one, as an admin and as an agent: no body may crash the server or make
// it answer 5xx (a bad body is the caller's error, 4xx), and the server
// keeps answering.
func FuzzRequestBodies(f *testing.F) {
	endpoints := []string{
		"/api/v1/tokens", "/api/v1/releases", "/api/v1/releases/p/1.0.0/promote", "/api/v1/releases/p/1.0.0/yank",
		"/api/v1/enroll-tokens", "/api/v1/upgrades", "/api/v1/agent/enroll", "/api/v1/agent/checkin?wait=0",
		"/api/v1/agent/events", "/api/v1/uploads", "/api/v1/rollouts", "/api/v1/rollouts/1/cancel",
		"/api/v1/webhooks",
	}
	seeds := []string{
		`{"role":"viewer","name":"x"}`, `{"upload_id":"00000000000000000000000000000000","product":"p","version":"1.0.0","targets_metadata":{"signed":{}}}`,
		`{"channel":"beta"}`, `{"reason":"r"}`, `{"client":"acme","expires_in":"1h","uses":3}`,
		`{"site":"s","to":"1.0.0","now":true}`, `{"token":"dle_x","site":"s","client":"c","product":"p"}`,
		`{"installed_version":"1.0.0","state":"idle","job":{"job_id":"j","result":"succeeded"},"drift":["a"]}`,
		`{"state":"idle","job":{"job_id":"j","result":"exploded"}}`, `{"state":"<img src=x onerror=alert(1)>","drift":["\u001b[2J"]}`,
		`{"installed_version":"1.0; DROP TABLE sites","hostname":"` + strings.Repeat("h", 300) + `"}`,
		`{"events":[{"job_id":"j","seq":-1,"state":"x","message":"\u0000\u202e","at":"2026-01-01T00:00:00Z"}]}`,
		`{"events":[{"job_id":"j","seq":1,"state":"committed","at":"2026-01-01T00:00:00Z"}]}`,
		"\x1f\x8b\x08\x00", `null`, `[]`, `{"events":null}`, `{"uses":-1}`, `{"expires_in":"-5h"}`, `{"to":"\u0000"}`,
		`{"role":"admin","name":"y","expires_in":"1h"}`, `{"client":"acme","site":"s","replace":true}`, `{"client":"acme","replace":true}`,
		`{"product":"p","version":"1.0.0","sites":["s"],"canary":["s","s"],"waves":[5,100],"max_failures":"10%","soak_seconds":60}`,
		`{"product":"p","version":"1.0.0","clients":["c"],"waves":[100,5e-324,-1],"max_parallel":-5,"max_failures":"1e400%","soak_seconds":-1}`,
		`{"product":"p","version":"1.0.0","channel":"stable","sites":[""],"hold_between_waves":true}`,
	}
	for i, s := range seeds {
		f.Add(uint8(i), []byte(s))
	}
	for _, s := range []string{`{"url":"http://127.0.0.1:9/","events":["job.*","release.yanked"],"secret":"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}`,
		`{"url":"javascript:alert(1)"}`, `{"url":"http://[::1"}`, `{"url":"http://h/","events":["x.*",""]}`, `{"url":"http://h/","secret":"whsec_%%%"}`} {
		f.Add(uint8(10), []byte(s)) // POST /api/v1/webhooks
	}
	h, admin, agent := fuzzServer(f)
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		path := endpoints[int(which)%len(endpoints)]
		token := admin
		if strings.HasPrefix(path, "/api/v1/agent/") {
			token = agent
		}
		req := httptest.NewRequest("POST", path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("POST %s with %q: %d %s", path, body, rec.Code, rec.Body)
		}
	})
}

// FuzzAuditQuery sends arbitrary query strings to GET /api/v1/audit as an
// admin: none may make the server answer 5xx, and an answer holds no more
// entries than its limit, newest first.
func FuzzAuditQuery(f *testing.F) {
	for _, q := range []string{
		"", "limit=1", "limit=1000", "limit=1001", "limit=0", "limit=-1", "limit=x", "before=1", "before=0", "before=9223372036854775807",
		"since=24h", "since=7d", "since=2025-06-01T00:00:00Z", "since=0001-01-01T00:00:00Z", "since=9999-12-31T23:59:59Z", "since=-1h",
		"since=2562047h", "actor=admin", "actor=updateserver+init", "actor=%00", "actor=%ff", "limit=2&before=3&since=1h&actor=admin",
	} {
		f.Add(q)
	}
	h, admin, _ := fuzzServer(f)
	f.Fuzz(func(t *testing.T, query string) {
		req := httptest.NewRequest("GET", "/api/v1/audit", nil)
		req.URL.RawQuery = query
		req.Header.Set("Authorization", "Bearer "+admin)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("GET /api/v1/audit?%s: %d %s", query, rec.Code, rec.Body)
		}
		if rec.Code != http.StatusOK {
			return
		}
		var es []protocol.AuditEntry
		jsonUnmarshal(t, rec.Body.Bytes(), &es)
		limit := protocol.AuditLimitDefault
		if l, err := strconv.Atoi(req.URL.Query().Get("limit")); err == nil {
			limit = l
		}
		if len(es) > limit {
			t.Fatalf("GET /api/v1/audit?%s: %d entries, limit %d", query, len(es), limit)
		}
		for i := 1; i < len(es); i++ {
			if es[i].ID >= es[i-1].ID {
				t.Fatalf("GET /api/v1/audit?%s: not newest first: %+v", query, es)
			}
		}
	})
}

func fuzzServer(f *testing.F) (http.Handler, string, string) {
	dir := f.TempDir()
	d, err := daemon.Open(context.Background(), daemon.Config{
		DataDir: filepath.Join(dir, "data"), Listen: "127.0.0.1:0", MaxBundleSize: 1 << 20,
		Expiry: tufrepo.DefaultExpiry(), RefreshInterval: time.Hour, PollInterval: time.Second, JobTimeout: time.Hour,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { d.Close() })
	tok, _ := os.ReadFile(filepath.Join(dir, "data", "admin.token"))
	admin := strings.TrimSpace(string(tok))
	// Limits out of the way: the fuzzer is one very busy agent.
	unlimited := api.Rate{PerSecond: 1e9, Burst: 1 << 30}
	h := (&api.Server{Store: d.Store, Publisher: d.Publisher, Fleet: d.Fleet, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Limits: api.Limits{AuthFailures: unlimited, Checkins: unlimited, Events: unlimited, MaxKeys: 100}}).Handler()
	// An enrolled agent, so agent endpoints get past authentication.
	call := func(path, token, body string) []byte {
		req := httptest.NewRequest("POST", path, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 300 {
			f.Fatalf("%s: %d %s", path, rec.Code, rec.Body)
		}
		return rec.Body.Bytes()
	}
	var et protocol.CreateEnrollTokenResponse
	jsonUnmarshal(f, call("/api/v1/enroll-tokens", admin, `{"client":"acme"}`), &et)
	var er protocol.EnrollResponse
	jsonUnmarshal(f, call("/api/v1/agent/enroll", "", `{"token":"`+et.Token+`","site":"s","client":"acme","product":"p"}`), &er)
	return h, admin, er.Credential
}

// FuzzAgentReports sends check-ins and event batches built from fuzzed
// fields, for a job the agent really has: the server answers 200 or 400
// (never 5xx), and what it stores and shows of them holds no control
// characters and stays within the protocol's bounds.
func FuzzAgentReports(f *testing.F) {
	f.Add("idle", "", "1.0.0", "host", "modified: a.dll", "downloading", int64(1), "msg")
	f.Add("committed", "succeeded", "1.1.0", "h", "<img src=x onerror=alert(1)>", "committed", int64(2), "done")
	f.Add("dancing", "exploded", "banana", "a\x1bb", "\x1b[31m", "rolled_back", int64(0), strings.Repeat("x", 5000))
	f.Add("", "rolled_back", "", "", "\u202e", "rolling_back", int64(1<<62), "\x00\xff\n\t")
	h, admin, agent := fuzzServer(f)
	call := func(tb testing.TB, method, path, token string, body any) (int, []byte) {
		var rd io.Reader
		switch b := body.(type) {
		case nil:
		case io.Reader:
			rd = b
		default:
			j, _ := json.Marshal(b)
			rd = bytes.NewReader(j)
		}
		req := httptest.NewRequest(method, path, rd)
		req.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			tb.Fatalf("%s %s %v: %d %s", method, path, body, rec.Code, rec.Body)
		}
		return rec.Code, rec.Body.Bytes()
	}
	// A release and a job for the agent's site, so events get past the
	// ownership check.
	dir := f.TempDir()
	os.MkdirAll(filepath.Join(dir, "files"), 0o755)
	os.WriteFile(filepath.Join(dir, "files", "VERSION"), []byte("1.0.0"), 0o644)
	var packed bytes.Buffer
	if err := bundle.Pack(context.Background(), dir, &packed); err != nil {
		f.Fatal(err)
	}
	var upl protocol.Upload
	_, b := call(f, "POST", "/api/v1/uploads", admin, &packed)
	jsonUnmarshal(f, b, &upl)
	if code, b := call(f, "POST", "/api/v1/releases", admin, protocol.PublishRequest{UploadID: upl.ID, Product: "p", Version: "1.0.0"}); code != 201 {
		f.Fatalf("publish: %d %s", code, b)
	}
	var up protocol.UpgradeResponse
	code, b := call(f, "POST", "/api/v1/upgrades", admin, protocol.UpgradeRequest{Site: "s", To: "1.0.0", Now: true})
	if code != 201 {
		f.Fatalf("upgrade: %d %s", code, b)
	}
	jsonUnmarshal(f, b, &up)
	jobID := up.Jobs[0].ID
	f.Fuzz(func(t *testing.T, state, result, version, hostname, drift, evState string, seq int64, msg string) {
		req := protocol.CheckinRequest{InstalledVersion: version, State: state, Hostname: hostname, Drift: []string{drift},
			Job: &protocol.JobStatus{ID: jobID, State: evState, Result: result}}
		if code, _ := call(t, "POST", "/api/v1/agent/checkin?wait=0", agent, req); code == 200 {
			_, b := call(t, "GET", "/api/v1/sites/s", admin, nil)
			var st protocol.Site
			json.Unmarshal(b, &st)
			for _, v := range append([]string{st.State, st.Hostname, st.InstalledVersion}, st.Drift...) {
				if strings.ContainsFunc(v, unicode.IsControl) || len(v) > protocol.MaxDriftLine {
					t.Fatalf("stored %q from %+v", v, req)
				}
			}
		}
		ev := protocol.EventsRequest{Events: []protocol.Event{{JobID: jobID, Seq: seq, State: evState, Message: msg, At: time.Now()}}}
		if code, _ := call(t, "POST", "/api/v1/agent/events", agent, ev); code == 200 {
			_, b := call(t, "GET", "/api/v1/sites/s/history?limit=1", admin, nil)
			var jobs []protocol.Job
			json.Unmarshal(b, &jobs)
			for _, j := range jobs {
				for _, e := range j.Events {
					if len(e.Message) > protocol.KeepMessage || strings.ContainsFunc(e.Message, func(r rune) bool { return unicode.IsControl(r) && r != '\n' && r != '\t' }) {
						t.Fatalf("stored message %q", e.Message)
					}
				}
			}
		}
	})
}
