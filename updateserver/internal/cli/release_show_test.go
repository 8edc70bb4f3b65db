package cli_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dropless/dropless/pkg/protocol"
)

// TestReleaseShowAndNotes: release show prints one release (text and
// JSON); release notes prints what an upgrade from A to B brings, newest
// first, A excluded and B included.
func TestReleaseShowAndNotes(t *testing.T) {
	s := startServer(t)
	dir := t.TempDir()
	for _, v := range []string{"1.0.0", "1.1.0", "1.2.0", "2.0.0"} {
		notes := filepath.Join(dir, v+".md")
		os.WriteFile(notes, []byte("notes of "+v+"\n"), 0o644)
		b := writeBundle(t, "", map[string]string{"files/VERSION": v})
		s.mustCLI(s.Admin, "release", "publish", "--product", "acme-erp", "--version", v, "--notes", notes, "--channel", "stable", b)
	}
	s.mustCLI(s.Admin, "release", "yank", "--product", "acme-erp", "--version", "1.1.0", "--reason", "bad invoices")
	viewer := s.newToken(protocol.RoleViewer)

	out := s.mustCLI(viewer, "release", "show", "--product", "acme-erp", "--version", "1.1.0")
	for _, want := range []string{"acme-erp 1.1.0", "stable", "yanked: bad invoices", "notes of 1.1.0", "sha256:", "admin"} {
		if !strings.Contains(out, want) {
			t.Errorf("release show lacks %q:\n%s", want, out)
		}
	}
	var r protocol.Release
	if err := json.Unmarshal([]byte(s.mustCLI(viewer, "release", "show", "--product", "acme-erp", "--version", "1.1.0", "--json")), &r); err != nil {
		t.Fatal(err)
	}
	if !r.Yanked || r.YankReason != "bad invoices" || r.Notes != "notes of 1.1.0\n" || r.SHA256 == "" {
		t.Errorf("release show --json = %+v", r)
	}
	if res := s.cli(viewer, "release", "show", "--product", "acme-erp", "--version", "9.0.0"); res.code != 1 || !strings.Contains(res.stderr, "9.0.0") {
		t.Errorf("show of an unpublished version: exit %d %q", res.code, res.stderr)
	}

	out = s.mustCLI(viewer, "release", "notes", "--product", "acme-erp", "--from", "1.0.0", "--to", "2.0.0")
	i2, i12, i11 := strings.Index(out, "notes of 2.0.0"), strings.Index(out, "notes of 1.2.0"), strings.Index(out, "notes of 1.1.0")
	if i2 < 0 || i12 < 0 || i11 < 0 || !(i2 < i12 && i12 < i11) || strings.Contains(out, "notes of 1.0.0") {
		t.Errorf("release notes 1.0.0 -> 2.0.0, want 2.0.0, 1.2.0, 1.1.0 (newest first, 1.0.0 excluded):\n%s", out)
	}
	if !strings.Contains(out, "yanked: bad invoices") {
		t.Errorf("release notes does not say 1.1.0 is yanked:\n%s", out)
	}
	var rs []protocol.Release
	if err := json.Unmarshal([]byte(s.mustCLI(viewer, "release", "notes", "--product", "acme-erp", "--from", "1.1.0", "--to", "1.2.0", "--json")), &rs); err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 || rs[0].Version != "1.2.0" {
		t.Errorf("release notes 1.1.0 -> 1.2.0 --json = %+v", rs)
	}
	for _, tt := range []struct {
		args     []string
		wantCode int
		wantErr  string
	}{
		{[]string{"--from", "2.0.0", "--to", "1.0.0"}, 2, "not older"},
		{[]string{"--from", "x", "--to", "1.0.0"}, 2, "--from"},
		{[]string{"--from", "1.0.0", "--to", "3.0.0"}, 1, "3.0.0 is not published"},
	} {
		res := s.cli(viewer, append([]string{"release", "notes", "--product", "acme-erp"}, tt.args...)...)
		if res.code != tt.wantCode || !strings.Contains(res.stderr, tt.wantErr) {
			t.Errorf("release notes %v: exit %d %q, want %d with %q", tt.args, res.code, res.stderr, tt.wantCode, tt.wantErr)
		}
	}
}

// TestPublishRefusesBeforeUploading: what the CLI can know before sending
// a byte (the version already exists, the directory is not a bundle, the
// notes file is missing) is refused with a clear sentence, and nothing is
// uploaded or staged.
func TestPublishRefusesBeforeUploading(t *testing.T) {
	s := startServer(t)
	s.publish(t, "1.0.0", "")
	before := s.state()
	good := writeBundle(t, "", map[string]string{"files/VERSION": "x"})
	noFiles := t.TempDir()
	os.WriteFile(filepath.Join(noFiles, "README"), []byte("not a bundle"), 0o644)
	for _, tt := range []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
		notErr   string
	}{
		{"existing version", []string{"--version", "1.0.0", good}, 1, "acme-erp 1.0.0 is already published", ""},
		{"no files/", []string{"--version", "2.0.0", noFiles}, 1, "bundle directory " + noFiles, "pack " + noFiles + ": pack"},
		{"missing notes", []string{"--version", "2.0.0", "--notes", "/does/not/exist.md", good}, 2, "--notes /does/not/exist.md: no such file", "open "},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res := s.cli(s.Admin, append([]string{"release", "publish", "--product", "acme-erp", "--progress", "never"}, tt.args...)...)
			if res.code != tt.wantCode || !strings.Contains(res.stderr, tt.wantErr) || (tt.notErr != "" && strings.Contains(res.stderr, tt.notErr)) {
				t.Errorf("exit %d %q; want %d with %q", res.code, res.stderr, tt.wantCode, tt.wantErr)
			}
			if after := s.state(); after != before {
				t.Errorf("a refused publish changed the server: %+v -> %+v", before, after)
			}
		})
	}
}
