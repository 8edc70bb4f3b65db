package cli_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dropless/dropless/pkg/bundle"
	"github.com/dropless/dropless/pkg/protocol"
)

func packDir(t *testing.T, dir string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := bundle.Pack(context.Background(), dir, &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// tarGz builds a .tar.gz by hand, so it can hold what Pack would refuse.
func tarGz(t *testing.T, entries ...tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, h := range entries {
		body := strings.Repeat("x", int(h.Size))
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body))
	}
	tw.Close()
	gz.Close()
	return buf.Bytes()
}

func uploadRaw(t *testing.T, s *server, token string, body []byte) string {
	t.Helper()
	code, b := s.api("POST", "/api/v1/uploads", token, bytes.NewReader(body))
	if code != http.StatusCreated {
		t.Fatalf("upload: %d %s", code, b)
	}
	var up protocol.Upload
	json.Unmarshal(b, &up)
	return up.ID
}

// state is what must not change when a publish is refused.
type state struct {
	releases  int
	timestamp int64
	staged    int
	targets   int
}

func (s *server) state() state {
	s.t.Helper()
	count := func(dir string) int {
		n := 0
		filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				n++
			}
			return nil
		})
		return n
	}
	return state{
		releases:  len(s.releases(s.Admin)),
		timestamp: s.timestampVersion(),
		staged:    count(filepath.Join(s.Data, "uploads")),
		targets:   count(filepath.Join(s.Data, "targets")),
	}
}

// TestBadUploadsRefused: each bad bundle gets a 4xx with a clear message
// and leaves nothing staged or published.
func TestBadUploadsRefused(t *testing.T) {
	s := startServer(t, maxBundle(64<<10))
	rel := s.newToken(protocol.RoleRelease)
	good := packDir(t, writeBundle(t, "", map[string]string{"files/a": "a"}))
	noise := make([]byte, 100<<10) // incompressible: the bundle is over the 64 KiB limit
	rand.Read(noise)
	huge := packDir(t, writeBundle(t, "", map[string]string{"files/big.bin": string(noise)}))
	dir := func(name string) tar.Header {
		return tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: 0o755}
	}
	file := func(name string, size int64) tar.Header {
		return tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: size}
	}
	tests := []struct {
		name     string
		token    string
		body     []byte
		wantCode int
		wantMsg  string
	}{
		{"not a bundle", rel, []byte("MZ this is a DLL, not a bundle"), 400, "gzip"},
		{"traversal entry", rel, tarGz(t, dir("files/"), file("files/../../evil.dll", 4)), 400, "evil.dll"},
		{"absolute path", rel, tarGz(t, dir("files/"), file("/etc/cron.d/evil", 4)), 400, "/etc/cron.d/evil"},
		{"symlink out", rel, tarGz(t, dir("files/"), tar.Header{Name: "files/l", Typeflag: tar.TypeSymlink, Linkname: "../../../etc/passwd", Mode: 0o777}), 400, "files/l"},
		{"device file", rel, tarGz(t, dir("files/"), tar.Header{Name: "files/dev", Typeflag: tar.TypeChar, Mode: 0o644}), 400, "files/dev"},
		{"malformed bundle.toml", rel, tarGz(t, tar.Header{Name: "bundle.toml", Typeflag: tar.TypeReg, Mode: 0o644, Size: 8}, dir("files/")), 400, "bundle.toml"},
		{"data after the gzip stream", rel, append(slices.Clone(good), "MZ appended DLL"...), 400, "after the end of the gzip stream"},
		{"over the size limit", rel, huge, 413, "larger than this server accepts"},
		{"over the size limit, streamed", rel, nil, 413, "larger than this server accepts"},
		{"no token", "", good, 401, "missing bearer token"},
		{"wrong token", "dlo_not-a-real-token", good, 401, "not valid"},
		{"viewer may not publish", s.newToken(protocol.RoleViewer), good, 403, "viewer token may not"},
		{"support may not publish", s.newToken(protocol.RoleSupport), good, 403, "support token may not"},
	}
	before := s.state()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body io.Reader = bytes.NewReader(tt.body)
			if tt.body == nil {
				// No Content-Length: the server must count as it reads.
				body = io.MultiReader(bytes.NewReader(huge))
			}
			code, resp := s.api("POST", "/api/v1/uploads", tt.token, body)
			var er protocol.ErrorResponse
			if err := json.Unmarshal(resp, &er); err != nil {
				t.Fatalf("answer is not the JSON error envelope: %s", resp)
			}
			if code != tt.wantCode || !strings.Contains(er.Error.Message, tt.wantMsg) {
				t.Errorf("got %d %q, want %d with %q", code, er.Error.Message, tt.wantCode, tt.wantMsg)
			}
			if after := s.state(); after != before {
				t.Errorf("state changed: %+v -> %+v", before, after)
			}
		})
	}
}

// TestBadPublishRequestsRefused: bad versions, constraints and names are
// refused by the server (over HTTP) and by the CLI before uploading.
func TestBadPublishRequestsRefused(t *testing.T) {
	s := startServer(t)
	dir := writeBundle(t, "", map[string]string{"files/a": "a"})
	before := s.state()
	tests := []struct {
		name    string
		req     string
		wantMsg string
	}{
		{"bad version", `"product":"p","version":"one.two"`, "one.two"},
		{"bad constraint", `"product":"p","version":"1.0.0","upgrade_from":">>> 2"`, ">>> 2"},
		{"bad product", `"product":"Acme ERP","version":"1.0.0"`, "Acme ERP"},
		{"bad channel", `"product":"p","version":"1.0.0","channels":["Stable!"]`, "Stable!"},
		{"no version", `"product":"p"`, "no version"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := uploadRaw(t, s, s.Admin, packDir(t, dir))
			code, body := s.api("POST", "/api/v1/releases", s.Admin, strings.NewReader(`{"upload_id":"`+id+`",`+tt.req+`}`))
			if code != 400 || !strings.Contains(string(body), tt.wantMsg) {
				t.Errorf("got %d %s, want 400 naming %q", code, body, tt.wantMsg)
			}
		})
	}
	if after := s.state(); after.releases != before.releases || after.timestamp != before.timestamp || after.targets != before.targets {
		t.Errorf("state changed: %+v -> %+v", before, after)
	}
	// The CLI refuses the same mistakes before sending anything: exit 2.
	for _, args := range [][]string{
		{"--product", "p", "--version", "one.two"},
		{"--product", "p", "--version", "1.0.0", "--upgrade-from", ">>> 2"},
		{"--version", "1.0.0"},
	} {
		r := s.cli(s.Admin, append(append([]string{"release", "publish"}, args...), dir)...)
		if r.code != 2 || r.stderr == "" {
			t.Errorf("publish %v: exit %d, stderr %q; want 2 and a message", args, r.code, r.stderr)
		}
	}
	// Malformed JSON and unknown uploads.
	if code, body := s.api("POST", "/api/v1/releases", s.Admin, strings.NewReader(`{"upload_id":`)); code != 400 || !strings.Contains(string(body), "not valid JSON") {
		t.Errorf("malformed JSON: %d %s", code, body)
	}
	if code, body := s.api("POST", "/api/v1/releases", s.Admin, strings.NewReader(`{"upload_id":"00000000000000000000000000000000","product":"p","version":"1.0.0"}`)); code != 404 || !strings.Contains(string(body), "upload the bundle again") {
		t.Errorf("unknown upload: %d %s", code, body)
	}
}
