//go:build unix

package engine

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dropless/dropless/agent/internal/appctl"
	"github.com/dropless/dropless/agent/internal/config"
	"github.com/dropless/dropless/pkg/bundle"
	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/pkg/testutil"
)

// The tests run a real application (appctl's testdata/testapp, a tiny
// HTTP server), real bundles built with bundle.Pack, real files and, for
// the crash tests, a real agent process killed by a failpoint.

const product = "acme-erp"

// helperEnv selects the helper-process mode of the test binary (see
// TestHelperProcess); its value is a JSON helperSpec.
const helperEnv = "ENGINE_TEST_HELPER"

// testApp is the test application's binary, built once by TestMain.
var testApp string

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(m.Run()) // the spec names the binary; nothing to build
	}
	os.Exit(func() int {
		dir, err := os.MkdirTemp("", "engine-test")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		testApp = filepath.Join(dir, "testapp")
		out, err := exec.Command("go", "build", "-o", testApp, "../appctl/testdata/testapp").CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "build testapp: %v\n%s", err, out)
			return 1
		}
		return m.Run()
	}())
}

// fileFetcher serves bundles from files, as the real TUF fetcher
// (agent/internal/fetch, tested there, and end to end in testenv) serves
// them from a repository: Target gives the length, SHA-256 and custom
// metadata; Download copies the bundle, verifying it, and like the real
// one makes no request (records no download) when dst already holds the
// target. Its fields travel to helper processes as JSON.
type fileFetcher struct {
	Targets map[string]fakeTarget
	// Block, when set, makes Target wait until the channel is closed.
	block chan struct{}
	// downloaded lists the paths Download was asked for.
	mu         sync.Mutex
	downloaded []string
}

type fakeTarget struct {
	File   string
	Custom protocol.TargetCustom
	// Err fails Download with this message; Corrupt makes it write other
	// bytes than the target (a lying fetcher).
	Err     string
	Corrupt bool
}

func (f *fileFetcher) Target(ctx context.Context, path string) (int64, string, protocol.TargetCustom, error) {
	if f.block != nil {
		select {
		case <-f.block:
		case <-ctx.Done():
			return 0, "", protocol.TargetCustom{}, ctx.Err()
		}
	}
	t, ok := f.Targets[path]
	if !ok {
		return 0, "", protocol.TargetCustom{}, fmt.Errorf("target %s not found in the repository", path)
	}
	b, err := os.ReadFile(t.File)
	if err != nil {
		return 0, "", protocol.TargetCustom{}, err
	}
	sum := sha256.Sum256(b)
	return int64(len(b)), hex.EncodeToString(sum[:]), t.Custom, nil
}

func (f *fileFetcher) Download(ctx context.Context, path, dst string) error {
	if t, ok := f.Targets[path]; ok {
		want, err1 := os.ReadFile(t.File)
		have, err2 := os.ReadFile(dst)
		if err1 == nil && err2 == nil && bytes.Equal(want, have) {
			return nil // reused, as fetch.Client.Download does
		}
	}
	f.mu.Lock()
	f.downloaded = append(f.downloaded, path)
	f.mu.Unlock()
	t, ok := f.Targets[path]
	if !ok {
		return fmt.Errorf("target %s not found", path)
	}
	if t.Err != "" {
		return errors.New(t.Err)
	}
	b, err := os.ReadFile(t.File)
	if err != nil {
		return err
	}
	if t.Corrupt {
		b = append([]byte(nil), b...)
		b[len(b)/2] ^= 0xff
	}
	tmp := dst + ".part"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

// testSite is one site: install and data dirs, the app's port and pidfile,
// and the bundles it can be offered.
type testSite struct {
	Dir, InstallDir, DataDir, BundleDir, Pidfile, App string
	Port                                              int
	Keep                                              int
	HealthTimeout                                     time.Duration
	Fetcher                                           *fileFetcher
	// Database is the agent's [database], nil for none (see
	// db_helpers_test.go).
	Database *config.Database
	// DriftIgnore is the agent's drift_ignore.
	DriftIgnore []string
	// AllowDowngrade is the agent's allow_downgrade.
	AllowDowngrade bool
	// Data are the agent's [[data]] paths (see data_test.go).
	Data []string
}

func newSite(t *testing.T) *testSite {
	t.Helper()
	dir := t.TempDir()
	s := &testSite{
		Dir:           dir,
		InstallDir:    filepath.Join(dir, "install"),
		DataDir:       filepath.Join(dir, "data"),
		BundleDir:     filepath.Join(dir, "bundles"),
		Pidfile:       filepath.Join(dir, "app.pid"),
		App:           testApp,
		Port:          testutil.FreePort(t),
		Keep:          3,
		HealthTimeout: 1500 * time.Millisecond,
		Fetcher:       &fileFetcher{Targets: map[string]fakeTarget{}},
	}
	for _, d := range []string{s.InstallDir, s.BundleDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// Never leave an app running after the test.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := s.controller(slog.New(slog.DiscardHandler)).Stop(ctx); err != nil {
			t.Logf("cleanup: stop the app: %v", err)
		}
	})
	return s
}

// appConfig is the [app] config of the test application: the start
// command launches it in the background and waits for its pidfile; the
// stop command sends SIGTERM and waits until the app removed its pidfile.
func (s *testSite) appConfig() config.App {
	return config.App{
		// The app logs outside its release directory: a file it wrote
		// there would be drift (unless Config.DriftIgnore names it).
		// An app that exits before writing its pidfile (its port
		// taken) fails the start at once, not after a minute.
		Start: []string{"sh", "-c", `nohup "$0" -addr "$1" -pidfile "$2" >>"$3" 2>&1 &
p=$!; i=0; while [ ! -f "$2" ]; do kill -0 $p 2>/dev/null || [ -f "$2" ] || exit 1; sleep 0.05; i=$((i+1)); [ $i -lt 1200 ] || exit 1; done`,
			s.App, fmt.Sprintf("127.0.0.1:%d", s.Port), s.Pidfile, filepath.Join(s.Dir, "app.log")},
		Stop: []string{"sh", "-c", `[ -f "$0" ] || exit 0
kill "$(cat "$0")" 2>/dev/null || { rm -f "$0"; exit 0; }
i=0; while [ -f "$0" ]; do sleep 0.05; i=$((i+1)); [ $i -lt 200 ] || exit 1; done`, s.Pidfile},
		HealthURL:     s.url("/health"),
		HealthTimeout: config.Duration{Duration: s.HealthTimeout},
		// Generous: on a loaded machine (CI, parallel tests) starting the
		// test app has taken over 15s; a real failure still ends the test.
		CommandTimeout: config.Duration{Duration: 90 * time.Second},
	}
}

func (s *testSite) controller(log *slog.Logger) appctl.Controller {
	c, err := appctl.New(s.appConfig(), s.InstallDir, log)
	if err != nil {
		panic(err)
	}
	return c
}

func (s *testSite) url(path string) string { return fmt.Sprintf("http://127.0.0.1:%d%s", s.Port, path) }

func (s *testSite) config(log *slog.Logger, failpoint string) Config {
	return Config{
		Product:        product,
		AllowDowngrade: s.AllowDowngrade,
		InstallDir:     s.InstallDir,
		DataDir:        s.DataDir,
		KeepReleases:   s.Keep,
		App:            s.controller(log),
		Fetcher:        s.Fetcher,
		Log:            log,
		Failpoint:      failpoint,
		Database:       s.Database,
		DriftIgnore:    s.DriftIgnore,
		Data:           s.Data,
		// As the runner does: the [app] health settings with the
		// bundle's [health] fields in their place.
		HealthOverride: func(h bundle.Health) (HealthChecker, error) {
			app := s.appConfig()
			switch {
			case h.URL != "":
				app.HealthURL, app.HealthCmd = h.URL, nil
			case len(h.Cmd) > 0:
				app.HealthURL, app.HealthCmd = "", h.Cmd
			}
			if d, ok := h.TimeoutDuration(); ok {
				app.HealthTimeout.Duration = d
			}
			return appctl.New(app, s.InstallDir, log)
		},
	}
}

// open opens the site's engine, logging to t, closed at the test's end.
func (s *testSite) open(t *testing.T) *Engine {
	t.Helper()
	e, err := Open(context.Background(), s.config(testLogger(t), ""))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// release builds the bundle of version v with bundle.Pack and offers it
// as the target protocol.TargetPath(product, v). opts: "bad" ships
// files/unhealthy (the app answers 503); "upgrade_from=..." sets the
// constraint; "says=X" makes the signed custom metadata claim version X;
// "product=P" makes it claim product P (another product's release).
func (s *testSite) release(t *testing.T, v string, opts ...string) protocol.Assignment {
	t.Helper()
	return s.releaseWith(t, v, relSpec{Opts: opts})
}

// relSpec describes a test bundle beyond release's options.
type relSpec struct {
	Opts []string
	// Migrations are the files of migrations/, by name.
	Migrations map[string]string
	// Hooks are the scripts of hooks/, by hook name.
	Hooks map[string]string
	// Manifest is bundle.toml.
	Manifest string
	// Files are more files of files/, by path in the release.
	Files map[string]string
	// Name tells bundles of the same version apart (job id, source dir).
	Name string
}

// releaseWith builds and offers the bundle spec describes.
func (s *testSite) releaseWith(t *testing.T, v string, spec relSpec) protocol.Assignment {
	t.Helper()
	opts := spec.Opts
	name := v + strings.Join(opts, ",") + spec.Name
	src := filepath.Join(s.Dir, "src-"+name)
	files := map[string]string{
		"files/VERSION":       v + "\n",
		"files/lib/data.txt":  strings.Repeat("payload of "+v+"\n", 100),
		"files/bin/readme.md": "the app binary is outside the bundle in this test\n",
	}
	for p, c := range spec.Files {
		files["files/"+p] = c
	}
	for p, c := range spec.Migrations {
		files["migrations/"+p] = c
	}
	if spec.Manifest != "" {
		files["bundle.toml"] = spec.Manifest
	}
	if err := os.RemoveAll(src); err != nil {
		t.Fatal(err)
	}
	custom := protocol.TargetCustom{Product: product, Version: v}
	for _, o := range opts {
		switch {
		case o == "bad":
			files["files/unhealthy"] = ""
		case strings.HasPrefix(o, "upgrade_from="):
			custom.UpgradeFrom = strings.TrimPrefix(o, "upgrade_from=")
		case strings.HasPrefix(o, "says="):
			custom.Version = strings.TrimPrefix(o, "says=")
		case strings.HasPrefix(o, "product="):
			custom.Product = strings.TrimPrefix(o, "product=")
		}
	}
	for name, content := range files {
		p := filepath.Join(src, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for hook, script := range spec.Hooks {
		p := filepath.Join(src, "hooks", hook)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("lib/data.txt", filepath.Join(src, "files", "data-link")); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := bundle.Pack(context.Background(), src, &buf); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(s.BundleDir, filepath.Base(src)+".tar.gz")
	if err := os.WriteFile(file, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	target := protocol.TargetPath(product, v)
	s.Fetcher.Targets[target] = fakeTarget{File: file, Custom: custom}
	return protocol.Assignment{JobID: "job-" + name, Product: product, Version: v, Target: target}
}

// install runs a job that must succeed.
func (s *testSite) install(t *testing.T, e *Engine, a protocol.Assignment) {
	t.Helper()
	st, err := e.Run(context.Background(), a)
	if err != nil || st.Result != protocol.ResultSucceeded {
		t.Fatalf("install %s: %+v, %v (last error %q)", a.Version, st, err, e.Status().LastError)
	}
}

// current returns the version current points at, "" when there is none.
func (s *testSite) current(t *testing.T) string {
	t.Helper()
	link, err := os.Readlink(filepath.Join(s.InstallDir, "current"))
	if errors.Is(err, os.ErrNotExist) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	v := linkVersion(link)
	if v == "" {
		t.Fatalf("current -> %s, not a release", link)
	}
	return v
}

// releases lists the release directories.
func (s *testSite) releases(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(s.InstallDir, "releases"))
	if err != nil {
		t.Fatal(err)
	}
	var vs []string
	for _, e := range entries {
		vs = append(vs, e.Name())
	}
	return vs
}

// running returns the version the app reports, "" when nothing answers,
// and whether its health check passes.
func (s *testSite) running() (string, bool) {
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := c.Get(s.url("/version"))
	if err != nil {
		return "", false
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	h, err := c.Get(s.url("/health"))
	if err != nil {
		return strings.TrimSpace(string(b)), false
	}
	h.Body.Close()
	return strings.TrimSpace(string(b)), h.StatusCode == 200
}

// pid returns the running app's pid ("" when none).
func (s *testSite) pid() string {
	b, _ := os.ReadFile(s.Pidfile)
	return strings.TrimSpace(string(b))
}

// checkConsistent asserts the site is whole on version want ("" = nothing
// installed): current points at a complete release of want, the app runs
// it and is healthy, and the engine reports it installed.
func (s *testSite) checkConsistent(t *testing.T, e *Engine, want string) {
	t.Helper()
	if got := s.current(t); got != want {
		t.Errorf("current -> %q, want %q", got, want)
	}
	if got := e.Status().InstalledVersion; got != want {
		t.Errorf("InstalledVersion = %q, want %q", got, want)
	}
	v, healthy := s.running()
	if want == "" {
		if v != "" {
			t.Errorf("the app %s runs on a site with nothing installed", v)
		}
		return
	}
	if v != want || !healthy {
		t.Errorf("the app runs %q (healthy %v), want %q healthy", v, healthy, want)
	}
	b, err := os.ReadFile(filepath.Join(s.InstallDir, "releases", want, "VERSION"))
	if err != nil || strings.TrimSpace(string(b)) != want {
		t.Errorf("releases/%s is not complete: VERSION %q, %v", want, b, err)
	}
	// Every file of the bundle is there with its content.
	tg, ok := s.Fetcher.Targets[protocol.TargetPath(product, want)]
	if !ok {
		t.Fatalf("no bundle for %s", want)
	}
	f, err := os.Open(tg.File)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	info, err := bundle.Unpack(context.Background(), f, t.TempDir(), bundle.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if err := verifyRelease(filepath.Join(s.InstallDir, "releases", want), info); err != nil {
		t.Errorf("releases/%s is not complete: %v", want, err)
	}
}

// checkEvents asserts a job's events are numbered 1..n without gaps, in
// time order, and returns their states.
func checkEvents(t *testing.T, e *Engine, jobID string) ([]string, []protocol.Event) {
	t.Helper()
	evs, err := e.Events(context.Background(), jobID)
	if err != nil {
		t.Fatal(err)
	}
	var states []string
	for i, ev := range evs {
		if ev.Seq != int64(i+1) || ev.JobID != jobID {
			t.Errorf("event %d is %s/%d: want seq %d, no gaps", i, ev.JobID, ev.Seq, i+1)
		}
		if i > 0 && ev.At.Before(evs[i-1].At) {
			t.Errorf("event %d is older than event %d", ev.Seq, evs[i-1].Seq)
		}
		states = append(states, ev.State)
	}
	return states, evs
}

// testLogger logs through t.Log at Info and above.
func testLogger(t *testing.T) *slog.Logger { return testutil.NewLog(t, slog.LevelInfo).Logger() }

// helperSpec tells a helper process what to do.
type helperSpec struct {
	Site       *testSite
	Mode       string // "run" or "recover"
	Assignment protocol.Assignment
	Failpoint  string
}

// TestHelperProcess is not a test: it is the agent process of the crash
// tests, run by runHelper in a re-executed test binary. It exits with
// FailpointExitCode at the failpoint, 0 when it got through.
func TestHelperProcess(t *testing.T) {
	raw := os.Getenv(helperEnv)
	if raw == "" {
		t.Skip("helper process of the crash tests")
	}
	var h helperSpec
	if err := json.Unmarshal([]byte(raw), &h); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx := context.Background()
	e, err := Open(ctx, h.Site.config(log, h.Failpoint))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	switch h.Mode {
	case "run":
		st, err := e.Run(ctx, h.Assignment)
		fmt.Fprintf(os.Stderr, "helper: run: %+v %v\n", st, err)
	case "recover":
		err := e.Recover(ctx)
		fmt.Fprintf(os.Stderr, "helper: recover: %v\n", err)
	}
	e.Close()
	os.Exit(0)
}

// startHelper starts the agent in a child process, for the test to kill.
func startHelper(t *testing.T, h helperSpec) *exec.Cmd {
	t.Helper()
	spec, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+string(spec))
	out := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Logf("helper process (%s):\n%s", h.Mode, out)
	})
	return cmd
}

// runHelper runs the agent in a child process and returns its exit code.
func runHelper(t *testing.T, h helperSpec) int {
	t.Helper()
	spec, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+string(spec))
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	t.Logf("helper process (%s, failpoint %q):\n%s", h.Mode, h.Failpoint, out)
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0
}
