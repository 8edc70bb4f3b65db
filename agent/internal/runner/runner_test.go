package runner

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dropless/dropless/agent/internal/config"
	"github.com/dropless/dropless/agent/internal/engine"
	"github.com/dropless/dropless/pkg/bundle"
	"github.com/dropless/dropless/pkg/protocol"
)

func TestCheckinCarriesDrift(t *testing.T) {
	r := New(&config.Config{Site: "s"}, slog.New(slog.DiscardHandler))
	drift := []string{"modified: bin/app.dll", "migration 0003_x: checksum differs from release 1.1.0"}
	req := r.checkinRequest(engine.Status{InstalledVersion: "1.1.0", State: protocol.StateIdle, Drift: drift})
	if !slices.Equal(req.Drift, drift) || req.InstalledVersion != "1.1.0" {
		t.Errorf("check-in %+v", req)
	}
	if req := r.checkinRequest(engine.Status{}); req.Drift != nil || req.State != protocol.StateIdle {
		t.Errorf("check-in without drift %+v", req)
	}
}

// A bundle's [health] replaces the [app] health settings it names.
func TestHealthOverride(t *testing.T) {
	var mu sync.Mutex
	var hits []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		mu.Lock()
		hits = append(hits, req.URL.Path)
		mu.Unlock()
		if req.URL.Path != "/ready" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	cfg := &config.Config{Site: "s", InstallDir: t.TempDir(), App: config.App{
		Start: []string{"true"}, Stop: []string{"true"}, HealthURL: srv.URL + "/health",
		HealthTimeout: config.Duration{Duration: time.Minute}, CommandTimeout: config.Duration{Duration: time.Minute},
	}}
	r := New(cfg, slog.New(slog.DiscardHandler))
	hc, err := r.healthOverride(bundle.Health{URL: srv.URL + "/ready", Timeout: "2s"})
	if err != nil {
		t.Fatal(err)
	}
	if err := hc.Healthy(context.Background()); err != nil {
		t.Errorf("Healthy = %v", err)
	}
	// Only the timeout overridden: the [app] URL, which fails, within 1s.
	hc, err = r.healthOverride(bundle.Health{Timeout: "1s"})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = hc.Healthy(context.Background())
	if err == nil || time.Since(start) > 10*time.Second {
		t.Errorf("Healthy = %v after %s", err, time.Since(start))
	}
	mu.Lock()
	defer mu.Unlock()
	if hits[0] != "/ready" || hits[len(hits)-1] != "/health" {
		t.Errorf("hits %v", hits)
	}
}
