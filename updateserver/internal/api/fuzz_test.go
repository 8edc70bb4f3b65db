package api_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
		"/api/v1/agent/events", "/api/v1/uploads",
	}
	seeds := []string{
		`{"role":"viewer","name":"x"}`, `{"upload_id":"00000000000000000000000000000000","product":"p","version":"1.0.0","targets_metadata":{"signed":{}}}`,
		`{"channel":"beta"}`, `{"reason":"r"}`, `{"client":"acme","expires_in":"1h","uses":3}`,
		`{"site":"s","to":"1.0.0","now":true}`, `{"token":"dle_x","site":"s","client":"c","product":"p"}`,
		`{"installed_version":"1.0.0","state":"idle","job":{"job_id":"j","result":"succeeded"},"drift":["a"]}`,
		`{"events":[{"job_id":"j","seq":1,"state":"committed","at":"2026-01-01T00:00:00Z"}]}`,
		"\x1f\x8b\x08\x00", `null`, `[]`, `{"events":null}`, `{"uses":-1}`, `{"expires_in":"-5h"}`, `{"to":"\u0000"}`,
		`{"role":"admin","name":"y","expires_in":"1h"}`, `{"client":"acme","site":"s","replace":true}`, `{"client":"acme","replace":true}`,
	}
	for i, s := range seeds {
		f.Add(uint8(i), []byte(s))
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
	h := (&api.Server{Store: d.Store, Publisher: d.Publisher, Fleet: d.Fleet, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}).Handler()
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
