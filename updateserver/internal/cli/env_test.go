package cli_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/pkg/testutil"
	"github.com/dropless/dropless/updateserver/internal/api"
	"github.com/dropless/dropless/updateserver/internal/api/spectest"
	"github.com/dropless/dropless/updateserver/internal/cli"
	"github.com/dropless/dropless/updateserver/internal/daemon"
	"github.com/dropless/dropless/updateserver/internal/store"
	"github.com/dropless/dropless/updateserver/internal/store/storetest"
	"github.com/dropless/dropless/updateserver/internal/tufrepo"
)

// server is a real update server on a loopback port with a temp data dir.
type server struct {
	t     *testing.T
	URL   string
	Data  string
	Admin string
	d     *daemon.Daemon

	tokens int // how many newToken made
}

// rawDB is the server's database opened behind its back, as an
// operator's SQL would: the SQLite file, or on PostgreSQL the store's own
// pool (which takes the same ? placeholders).
func (s *server) rawDB(t *testing.T) *sql.DB {
	t.Helper()
	if s.d.Store.Dialect() == store.Postgres {
		return s.d.Store.DB()
	}
	db, err := sql.Open("sqlite", filepath.Join(s.Data, daemon.DBFile)+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

type serverOpt func(*daemon.Config)

// apiDescription is the server's API description: every request the CLI
// makes in these tests and every answer is checked against it.
func apiDescription(t *testing.T) []byte {
	t.Helper()
	spec, err := api.Description()
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

func maxBundle(n int64) serverOpt { return func(c *daemon.Config) { c.MaxBundleSize = n } }

func startServer(t *testing.T, opts ...serverOpt) *server {
	t.Helper()
	data := filepath.Join(t.TempDir(), "data")
	cfg := daemon.Config{
		DataDir:         data,
		Listen:          "127.0.0.1:0",
		MaxBundleSize:   daemon.DefaultMaxBundleSize,
		Expiry:          tufrepo.DefaultExpiry(),
		RefreshInterval: time.Minute,
		PollInterval:    daemon.DefaultPollInterval,
		JobTimeout:      daemon.DefaultJobTimeout,
		Log:             testutil.NewLog(t, slog.LevelInfo).Logger(),
		WrapHandler:     spectest.Wrap(t, apiDescription(t)),
	}
	if storetest.Postgres() { // make test-postgres: every CLI test on PostgreSQL too
		cfg.Store = storetest.Schema(t)
	}
	for _, o := range opts {
		o(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d, err := daemon.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Listen(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := d.Serve(ctx); err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		d.Close()
	})
	tok, err := os.ReadFile(filepath.Join(data, daemon.AdminTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	scheme := "http://"
	if cfg.TLSCert != "" {
		scheme = "https://"
	}
	return &server{t: t, URL: scheme + d.Addr(), Data: data, Admin: strings.TrimSpace(string(tok)), d: d}
}

// result is one CLI run.
type result struct {
	code           int
	stdout, stderr string
}

// cli runs the updateserver command line in-process against s with token.
func (s *server) cli(token string, args ...string) result {
	s.t.Helper()
	return s.cliEnv(map[string]string{"UPDATESERVER_URL": s.URL, "UPDATESERVER_TOKEN": token}, args...)
}

// cliEnv runs the updateserver command line in-process with env.
func (s *server) cliEnv(env map[string]string, args ...string) result {
	s.t.Helper()
	var out, errb bytes.Buffer
	code := cli.Run(context.Background(), args, cli.IO{
		Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb,
		Getenv: func(k string) string { return env[k] },
	})
	return result{code, out.String(), errb.String()}
}

// mustCLI runs the CLI and fails the test unless it exits 0.
func (s *server) mustCLI(token string, args ...string) string {
	s.t.Helper()
	r := s.cli(token, args...)
	if r.code != 0 {
		s.t.Fatalf("updateserver %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// newToken creates a token of role under a name no live token has.
func (s *server) newToken(role string) string {
	s.t.Helper()
	s.tokens++
	return strings.TrimSpace(s.mustCLI(s.Admin, "token", "create", "--role", role, "--name", fmt.Sprintf("%s-test-%d", role, s.tokens)))
}

func (s *server) releases(token string) []protocol.Release {
	s.t.Helper()
	var rs []protocol.Release
	if err := json.Unmarshal([]byte(s.mustCLI(token, "release", "list", "--json")), &rs); err != nil {
		s.t.Fatal(err)
	}
	return rs
}

// api calls the HTTP API directly and returns status and body.
func (s *server) api(method, path, token string, body io.Reader) (int, []byte) {
	s.t.Helper()
	req, err := http.NewRequest(method, s.URL+path, body)
	if err != nil {
		s.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (s *server) timestampVersion() int64 {
	s.t.Helper()
	code, b := s.api("GET", "/tuf/metadata/timestamp.json", "", nil)
	if code != 200 {
		s.t.Fatalf("timestamp.json: %d", code)
	}
	md, err := (&metadata.Metadata[metadata.TimestampType]{}).FromBytes(b)
	if err != nil {
		s.t.Fatal(err)
	}
	return md.Signed.Version
}

// writeBundle makes a bundle directory with a payload of the given content.
func writeBundle(t *testing.T, manifest string, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	if manifest != "" {
		if err := os.WriteFile(filepath.Join(dir, "bundle.toml"), []byte(manifest), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.MkdirAll(filepath.Join(dir, "files"), 0o755)
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// tufClient is go-tuf's own updater, trusting only the root.json it is
// given: a client we did not write.
func tufClient(t *testing.T, rootJSON []byte, metadataURL, targetsURL string) *updater.Updater {
	t.Helper()
	cfg, err := config.New(metadataURL, rootJSON)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RemoteTargetsURL = targetsURL
	cfg.LocalMetadataDir = t.TempDir()
	cfg.LocalTargetsDir = t.TempDir()
	up, err := updater.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return up
}
