package cli_test

import (
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/daemon"
)

// TestTUFServing: the repository is served with Range requests, ETags and
// cache headers that let a CDN keep immutable files forever and revalidate
// the entry points.
func TestTUFServing(t *testing.T) {
	s := startServer(t)
	dir := writeBundle(t, "", map[string]string{"files/a": strings.Repeat("payload ", 1000)})
	s.mustCLI(s.Admin, "release", "publish", "--product", "p", "--version", "1.0.0", dir)
	r := s.releases(s.Admin)[0]
	target := "/tuf/targets/p/" + r.SHA256 + ".p-1.0.0.tar.gz"

	get := func(path string, hdr map[string]string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", s.URL+path, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}

	tests := []struct {
		path      string
		wantCode  int
		wantCache string
	}{
		{"/tuf/metadata/timestamp.json", 200, "no-cache"},
		{"/tuf/metadata/root.json", 200, "no-cache"},
		{"/tuf/metadata/1.root.json", 200, "immutable"},
		{"/tuf/metadata/2.targets.json", 200, "immutable"},
		{"/tuf/metadata/2.snapshot.json", 200, "immutable"},
		{target, 200, "immutable"},
		{"/tuf/metadata/9.targets.json", 404, ""},
		{"/tuf/metadata/1.timestamp.json", 404, ""},
		{"/tuf/metadata/../admin.token", 404, ""},
		{"/tuf/targets/p/" + r.SHA256 + ".p-9.tar.gz", 404, ""},
		{"/tuf/targets/p/", 404, ""},
		{"/tuf/targets/p", 404, ""},
	}
	for _, tt := range tests {
		resp := get(tt.path, nil)
		if resp.StatusCode != tt.wantCode {
			t.Errorf("GET %s: %d, want %d", tt.path, resp.StatusCode, tt.wantCode)
			continue
		}
		if tt.wantCache != "" && !strings.Contains(resp.Header.Get("Cache-Control"), tt.wantCache) {
			t.Errorf("GET %s: Cache-Control %q, want %q", tt.path, resp.Header.Get("Cache-Control"), tt.wantCache)
		}
		if tt.wantCode == 200 && resp.Header.Get("ETag") == "" {
			t.Errorf("GET %s: no ETag", tt.path)
		}
	}

	// Range: resume a broken download.
	resp := get(target, map[string]string{"Range": "bytes=10-19"})
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusPartialContent || len(b) != 10 {
		t.Errorf("range request: %d with %d bytes", resp.StatusCode, len(b))
	}
	// Revalidation: an unchanged timestamp costs a 304.
	etag := get("/tuf/metadata/timestamp.json", nil).Header.Get("ETag")
	if resp := get("/tuf/metadata/timestamp.json", map[string]string{"If-None-Match": etag}); resp.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match: %d, want 304", resp.StatusCode)
	}
	// The repository is public; the API is not.
	if resp := get("/api/v1/releases", nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("API without a token: %d", resp.StatusCode)
	}
	if resp := get("/healthz", nil); resp.StatusCode != 200 {
		t.Errorf("healthz: %d", resp.StatusCode)
	}
}

// TestTimestampResigned: the running server re-signs the timestamp before
// it expires.
func TestTimestampResigned(t *testing.T) {
	s := startServer(t, func(c *daemon.Config) {
		c.Expiry.Timestamp = 4 * time.Second // re-signed when 1s is left
		c.RefreshInterval = 50 * time.Millisecond
	})
	first := s.timestampVersion()
	deadline := time.Now().Add(20 * time.Second)
	for s.timestampVersion() <= first {
		if time.Now().After(deadline) {
			t.Fatalf("timestamp still at version %d", first)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// go-tuf accepts the fresh metadata.
	root, _ := os.ReadFile(filepath.Join(s.Data, "root.json"))
	if err := tufClient(t, root, s.URL+"/tuf/metadata/", s.URL+"/tuf/targets/").Refresh(); err != nil {
		t.Fatal(err)
	}
}

// TestTokenRoles: only an admin creates tokens; a new token works at once.
func TestTokenRoles(t *testing.T) {
	s := startServer(t)
	viewer := s.newToken(protocol.RoleViewer)
	if !strings.HasPrefix(viewer, "dlo_") {
		t.Errorf("token %q lacks its prefix", viewer)
	}
	s.mustCLI(viewer, "release", "list")
	r := s.cli(viewer, "token", "create", "--role", "admin", "--name", "escalate")
	if r.code != 1 || !strings.Contains(r.stderr, "viewer token may not") {
		t.Errorf("viewer creating a token: exit %d %q", r.code, r.stderr)
	}
	if r := s.cli(s.Admin, "token", "create", "--role", "root", "--name", "x"); r.code != 2 {
		t.Errorf("bad role: exit %d", r.code)
	}
}

// TestUsage: exit codes and messages of the command line itself.
func TestUsage(t *testing.T) {
	s := startServer(t)
	tests := []struct {
		args     []string
		wantCode int
		wantErr  string
	}{
		{[]string{"--help"}, 0, ""},
		{[]string{"release", "publish", "--help"}, 0, ""},
		{[]string{}, 2, "needs a subcommand"},
		{[]string{"release"}, 2, "needs a subcommand"},
		{[]string{"release", "frobnicate"}, 2, "unknown command"},
		{[]string{"release", "list", "--bogus"}, 2, "unknown flag"},
		{[]string{"windoww", "set", "--site", "s", "--weekly", "Sat 22:00-Sun 04:00"}, 2, `unknown command "windoww"`},
		{[]string{"window", "set", "--site", "s", "--weekly", "Sat 22-Sun 4"}, 2, `weekly range "Sat 22-Sun 4"`},
		{[]string{"window", "set", "--site", "s", "--weekly", "Sat 22:00-Sun 04:00", "--tz", "Europe/Berln"}, 2, `time zone "Europe/Berln" is not known`},
		{[]string{"window", "set", "--site", "nosuch", "--weekly", "Sat 22:00-Sun 04:00"}, 1, "site nosuch is not enrolled"},
		{[]string{"freeze", "create", "--from", "tomorrow", "--to", "2030-01-01T00:00:00Z", "--reason", "x"}, 2, "is not an RFC 3339 time"},
		{[]string{"upgrade", "--site", "s", "--to", "1.0.0", "--reason", "x"}, 2, "--reason explains --now"},
		{[]string{"frobnicate", "--help"}, 2, `unknown command "frobnicate"`},
		{[]string{"release", "frobnicate", "--product", "p"}, 2, `unknown command "frobnicate" for "updateserver release"`},
		{[]string{"help", "release"}, 0, ""},
		{[]string{"release", "publish", "--product", "p", "--version", "1.0.0"}, 2, "bundle PATH"},
		{[]string{"release", "promote", "--product", "p"}, 2, "--version"},
		{[]string{"release", "publish", "--product", "p", "--version", "1.0.0", "/does/not/exist"}, 1, "/does/not/exist"},
		{[]string{"release", "list", "--server", "http://127.0.0.1:1"}, 1, "cannot reach the update server"},
		{[]string{"root", "sha256", "--data", "/does/not/exist"}, 1, "no root.json"},
	}
	for _, tt := range tests {
		r := s.cli(s.Admin, tt.args...)
		if r.code != tt.wantCode || !strings.Contains(r.stderr, tt.wantErr) {
			t.Errorf("updateserver %s: exit %d, stderr %q; want %d with %q", strings.Join(tt.args, " "), r.code, r.stderr, tt.wantCode, tt.wantErr)
		}
		if tt.wantCode != 0 && strings.Count(strings.TrimSpace(r.stderr), "\n") > 0 {
			t.Errorf("updateserver %s: error is more than one line: %q", strings.Join(tt.args, " "), r.stderr)
		}
	}
	if r := s.cli("", "release", "list"); r.code != 2 || !strings.Contains(r.stderr, "UPDATESERVER_TOKEN") {
		t.Errorf("no token: exit %d %q", r.code, r.stderr)
	}
}

// TestStoreFlag: --store takes a postgres:// URL only, and a store that
// cannot be opened is named without its password.
func TestStoreFlag(t *testing.T) {
	s := startServer(t)
	dir := t.TempDir()
	if r := s.cli("", "init", "--data", filepath.Join(dir, "a"), "--store", "mysql://db"); r.code != 2 || !strings.Contains(r.stderr, "give a postgres://") {
		t.Errorf("--store mysql://: exit %d, %q; want 2 and what to give", r.code, r.stderr)
	}
	r := s.cli("", "init", "--data", filepath.Join(dir, "b"), "--store", "postgres://u:s3cret@127.0.0.1:1/db?sslmode=disable&connect_timeout=5")
	if r.code != 1 || !strings.Contains(r.stderr, "open store postgres://u:***@127.0.0.1:1/db") || strings.Contains(r.stderr, "s3cret") {
		t.Errorf("unreachable PostgreSQL: exit %d, %q; want 1, the URL without its password", r.code, r.stderr)
	}
}

// TestServeBinary runs the real binary: first start initialises the data
// dir (admin.token 0600, root.json), root sha256 prints its hash, and
// SIGTERM shuts it down cleanly with exit 0.
func TestServeBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "updateserver")
	build := exec.Command("go", "build", "-o", bin, "github.com/dropless/dropless/updateserver/cmd/updateserver")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	data := filepath.Join(t.TempDir(), "data")
	cmd := exec.Command(bin, "serve", "--data", data, "--listen", "127.0.0.1:0")
	logs := &syncBuffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(logs.String(), "listening") {
		if time.Now().After(deadline) {
			t.Fatalf("server did not start: %s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	fi, err := os.Stat(filepath.Join(data, "admin.token"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin.token: %v %v", fi, err)
	}
	out, err := exec.Command(bin, "root", "sha256", "--data", data).Output()
	if err != nil || len(strings.TrimSpace(string(out))) != 64 {
		t.Fatalf("root sha256: %q %v", out, err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, logs.String())
	}
	if !strings.Contains(logs.String(), "shutting down") {
		t.Errorf("no shutdown in the log: %s", logs.String())
	}
}

// syncBuffer is a strings.Builder safe to read while a process writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
