//go:build unix

package appctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dropless/dropless/agent/internal/config"
	"github.com/dropless/dropless/pkg/testutil"
)

// site is an install dir with a release "current" holding VERSION and, for
// a bad release, the file "unhealthy".
type site struct {
	installDir, pidfile string
	port                int
}

func newSite(t *testing.T, version string, unhealthy bool) *site {
	t.Helper()
	dir := t.TempDir()
	s := &site{installDir: filepath.Join(dir, "install"), pidfile: filepath.Join(dir, "app.pid"), port: testutil.FreePort(t)}
	rel := filepath.Join(s.installDir, "releases", version)
	if err := os.MkdirAll(rel, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rel, "VERSION"), []byte(version+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if unhealthy {
		if err := os.WriteFile(filepath.Join(rel, "unhealthy"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join("releases", version), filepath.Join(s.installDir, CurrentDir)); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *site) url(path string) string { return fmt.Sprintf("http://127.0.0.1:%d%s", s.port, path) }

// app is the [app] config of the test app: the start command launches it
// in the background (nohup, output to a log file) and waits for its
// pidfile; the stop command sends SIGTERM and waits until the app removed
// its pidfile.
func (s *site) app() config.App {
	return config.App{
		Start: []string{"sh", "-c", `nohup "$0" -addr "$1" -pidfile "$2" >app.log 2>&1 &
i=0; while [ ! -f "$2" ]; do sleep 0.05; i=$((i+1)); [ $i -lt 200 ] || exit 1; done`,
			testApp, fmt.Sprintf("127.0.0.1:%d", s.port), s.pidfile},
		Stop: []string{"sh", "-c", `[ -f "$0" ] || exit 0
kill "$(cat "$0")" 2>/dev/null || { rm -f "$0"; exit 0; }
i=0; while [ -f "$0" ]; do sleep 0.05; i=$((i+1)); [ $i -lt 200 ] || exit 1; done`, s.pidfile},
		HealthURL:      s.url("/health"),
		HealthTimeout:  config.Duration{Duration: 5 * time.Second},
		CommandTimeout: config.Duration{Duration: 15 * time.Second},
	}
}

func (s *site) controller(t *testing.T, cfg config.App) Controller {
	t.Helper()
	c, err := New(cfg, s.installDir, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	// Never leave an app running after the test.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := c.Stop(ctx); err != nil {
			t.Logf("cleanup stop: %v", err)
		}
	})
	return c
}

func get(url string) (int, string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b)), nil
}

// awaitRefused polls until nothing listens on the site's port any more.
func awaitRefused(t *testing.T, s *site, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", s.port), 200*time.Millisecond)
		if err != nil {
			return
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("something still listens on port %d after %s", s.port, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestStartHealthyStop(t *testing.T) {
	s := newSite(t, "1.0.0", false)
	c := s.controller(t, s.app())
	ctx := context.Background()

	start := time.Now()
	if err := c.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	// The app runs on, but Start returned: it launched it and did not wait.
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("Start took %s", d)
	}
	if err := c.Healthy(ctx); err != nil {
		t.Fatalf("Healthy: %v", err)
	}
	if code, body, err := get(s.url("/version")); err != nil || code != 200 || body != "1.0.0" {
		t.Fatalf("GET /version = %d %q %v, want 200 1.0.0 (run in <install_dir>/current)", code, body, err)
	}
	if _, err := os.Stat(filepath.Join(s.installDir, "releases", "1.0.0", "app.log")); err != nil {
		t.Errorf("the start command did not run in current: %v", err)
	}

	if err := c.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	awaitRefused(t, s, 5*time.Second)
	// Stopping what is stopped succeeds.
	if err := c.Stop(ctx); err != nil {
		t.Fatalf("second Stop: %v", err)
	}

	// Now the health check fails, quickly, and says why.
	cfg := s.app()
	cfg.HealthTimeout.Duration = 600 * time.Millisecond
	c2, err := New(cfg, s.installDir, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	err = c2.Healthy(ctx)
	var he *HealthError
	if !errors.As(err, &he) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("Healthy with the app stopped = %v, want a HealthError saying connection refused", err)
	}
}

func TestHealthyFailsOn503(t *testing.T) {
	s := newSite(t, "1.1.0", true)
	cfg := s.app()
	cfg.HealthTimeout.Duration = time.Second
	c := s.controller(t, cfg)
	ctx := context.Background()
	if err := c.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	start := time.Now()
	err := c.Healthy(ctx)
	took := time.Since(start)
	if err == nil {
		t.Fatal("Healthy passed on an app answering 503")
	}
	t.Logf("error: %v (after %s)", err, took)
	if !strings.Contains(err.Error(), "health_url answered 503") || !strings.Contains(err.Error(), "after 1") {
		t.Errorf("error %q does not say what the check saw and for how long", err)
	}
	if took < time.Second || took > 3*time.Second {
		t.Errorf("Healthy took %s with a 1s timeout", took)
	}
}

func TestHealthyPollsUntilUp(t *testing.T) {
	s := newSite(t, "1.0.0", false)
	c := s.controller(t, s.app())
	// Something comes up on the port only after a while.
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})}
	t.Cleanup(func() { srv.Close() })
	go func() {
		time.Sleep(700 * time.Millisecond)
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", s.port))
		if err != nil {
			return
		}
		_ = srv.Serve(ln)
	}()
	start := time.Now()
	if err := c.Healthy(context.Background()); err != nil {
		t.Fatalf("Healthy: %v", err)
	}
	if d := time.Since(start); d < 600*time.Millisecond {
		t.Fatalf("Healthy passed after %s, before anything listened", d)
	}
}

func TestHealthyCancelled(t *testing.T) {
	s := newSite(t, "1.0.0", false)
	c := s.controller(t, s.app())
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	start := time.Now()
	if err := c.Healthy(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Healthy = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Healthy returned %s after the cancel", d)
	}
}

func TestHealthCmd(t *testing.T) {
	tests := []struct {
		name    string
		cmd     []string
		wantErr string
	}{
		{"exit 0", []string{"sh", "-c", "echo fine"}, ""},
		{"exit 1 names last line", []string{"sh", "-c", "echo checking; echo database is locked; exit 1"}, "health_cmd exited 1: database is locked after"},
		{"runs in current", []string{"sh", "-c", `test "$(cat VERSION)" = 1.0.0 || { echo wrong dir; exit 2; }`}, ""},
		{"missing program", []string{"/nonexistent/check"}, "health_cmd: cannot run"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSite(t, "1.0.0", false)
			cfg := s.app()
			cfg.HealthURL = ""
			cfg.HealthCmd = tt.cmd
			cfg.HealthTimeout.Duration = 700 * time.Millisecond
			c := s.controller(t, cfg)
			err := c.Healthy(context.Background())
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Healthy = %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Healthy = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestStartTimeoutKillsProcessGroup(t *testing.T) {
	s := newSite(t, "1.0.0", false)
	cfg := s.app()
	// A start command that runs the app in the foreground never returns.
	// The shell is the group leader and the app its child: only a kill of
	// the whole group stops the app too.
	cfg.Start = []string{"sh", "-c", `echo launching; "$0" -addr "$1"; echo never`, testApp, fmt.Sprintf("127.0.0.1:%d", s.port)}
	cfg.CommandTimeout.Duration = time.Second
	c := s.controller(t, cfg)
	ctx := context.Background()

	// The app comes up while the command hangs.
	errc := make(chan error, 1)
	start := time.Now()
	go func() { errc <- c.Start(ctx) }()
	if err := c.Healthy(ctx); err != nil {
		t.Fatalf("the hanging start command did not launch the app: %v", err)
	}
	err := <-errc
	took := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "did not finish within 1s") {
		t.Fatalf("Start = %v, want a timeout error", err)
	}
	if took > 8*time.Second {
		t.Fatalf("Start returned after %s with a 1s timeout", took)
	}
	awaitRefused(t, s, 5*time.Second)
}

func TestStopCommandFailure(t *testing.T) {
	s := newSite(t, "1.0.0", false)
	cfg := s.app()
	cfg.Stop = []string{"sh", "-c", "echo cannot stop: permission denied >&2; exit 4"}
	c, err := New(cfg, s.installDir, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	err = c.Stop(context.Background())
	if err == nil || err.Error() != "app.stop exited 4: cannot stop: permission denied" {
		t.Fatalf("Stop = %v", err)
	}
}

func TestNothingInstalled(t *testing.T) {
	installDir := t.TempDir()
	cfg := config.App{
		Start:     []string{"sh", "-c", "exit 0"},
		Stop:      []string{"sh", "-c", `test -d releases || echo stopped nothing in "$(pwd)"`},
		HealthURL: "http://127.0.0.1:1/health",
	}
	c, err := New(cfg, installDir, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	// Stop runs from the install dir: there is nothing to stop.
	if err := c.Stop(context.Background()); err != nil {
		t.Fatalf("Stop with nothing installed: %v", err)
	}
	// Start needs a release.
	if err := c.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "is a release installed?") {
		t.Fatalf("Start with nothing installed = %v", err)
	}
}

func TestNewRefusesMisconfiguration(t *testing.T) {
	ok := config.App{Start: []string{"a"}, Stop: []string{"b"}, HealthURL: "http://127.0.0.1:9000/health"}
	tests := []struct {
		name       string
		edit       func(*config.App)
		installDir string
		wantErr    string
	}{
		{"valid", func(*config.App) {}, "/opt/acme", ""},
		{"relative install dir", func(*config.App) {}, "opt/acme", "install_dir"},
		{"no control", func(a *config.App) { a.Start, a.Stop = nil, nil }, "/opt/acme", "set service (an OS service name) or both start and stop"},
		{"start only", func(a *config.App) { a.Stop = nil }, "/opt/acme", "both start and stop"},
		{"service and commands", func(a *config.App) { a.Service = "acme" }, "/opt/acme", "not both"},
		{"empty program", func(a *config.App) { a.Start = []string{""} }, "/opt/acme", "app.start: the first element must be a program"},
		{"no health", func(a *config.App) { a.HealthURL = "" }, "/opt/acme", "set health_url"},
		{"two healths", func(a *config.App) { a.HealthCmd = []string{"true"} }, "/opt/acme", "health_url or health_cmd, not both"},
		{"bad health url", func(a *config.App) { a.HealthURL = "127.0.0.1:9000" }, "/opt/acme", "app.health_url"},
		{"negative timeout", func(a *config.App) { a.HealthTimeout.Duration = -time.Second }, "/opt/acme", "app.health_timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			tt.edit(&cfg)
			_, err := New(cfg, tt.installDir, nil)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("New = %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("New = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}
