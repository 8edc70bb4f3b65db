package cli_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dropless/dropless/pkg/protocol"
)

// TestPublishVerifiedByGoTUF publishes a bundle directory and checks that
// go-tuf's updater, trusting only DIR/root.json, downloads and verifies it
// from the live server and from an exported static mirror, and refuses it
// once the file is altered on the server's disk.
func TestPublishVerifiedByGoTUF(t *testing.T) {
	s := startServer(t)
	rel := s.newToken(protocol.RoleRelease)
	dir := writeBundle(t, `product = "acme-erp"
version = "9.9.9"
upgrade_from = ">= 1.0, < 2.0"
notes = "from the manifest"
`, map[string]string{"files/bin/app": "v1.1 payload", "migrations/0001_init.up.sql": "create table t(x int);", "migrations/0001_init.down.sql": "drop table t;"})
	notes := filepath.Join(t.TempDir(), "notes.md")
	os.WriteFile(notes, []byte("Fixes the invoice rounding bug."), 0o644)

	out := s.mustCLI(rel, "release", "publish", "--product", "acme-erp", "--version", "1.1.0", "--channel", "stable", "--notes", notes, dir)
	if !strings.Contains(out, "published acme-erp 1.1.0 on channel stable") {
		t.Errorf("publish said %q", out)
	}

	rs := s.releases(rel)
	if len(rs) != 1 {
		t.Fatalf("release list has %d releases, want 1", len(rs))
	}
	r := rs[0]
	// Flags win over bundle.toml; what the flags did not give comes from it.
	if r.Product != "acme-erp" || r.Version != "1.1.0" || r.UpgradeFrom != ">= 1.0, < 2.0" ||
		r.Notes != "Fixes the invoice rounding bug." || !slices.Equal(r.Channels, []string{"stable"}) ||
		r.Target != "acme-erp/acme-erp-1.1.0.tar.gz" || r.Yanked || r.PublishedAt.IsZero() || r.Length == 0 {
		t.Errorf("release = %+v", r)
	}

	root, err := os.ReadFile(filepath.Join(s.Data, "root.json"))
	if err != nil {
		t.Fatal(err)
	}
	verify := func(t *testing.T, metaURL, targetsURL string) []byte {
		t.Helper()
		up := tufClient(t, root, metaURL, targetsURL)
		if err := up.Refresh(); err != nil {
			t.Fatalf("refresh: %v", err)
		}
		ti, err := up.GetTargetInfo(r.Target)
		if err != nil {
			t.Fatalf("target info: %v", err)
		}
		custom, err := protocol.ParseTargetCustom(*ti.Custom)
		if err != nil {
			t.Fatal(err)
		}
		if custom != (protocol.TargetCustom{Product: "acme-erp", Version: "1.1.0", UpgradeFrom: ">= 1.0, < 2.0"}) {
			t.Errorf("custom metadata = %+v", custom)
		}
		_, data, err := up.DownloadTarget(ti, "", "")
		if err != nil {
			t.Fatalf("download: %v", err)
		}
		sum := sha256.Sum256(data)
		if hex.EncodeToString(sum[:]) != r.SHA256 || int64(len(data)) != r.Length {
			t.Fatalf("downloaded %d bytes with sha256 %x; release list says %d, %s", len(data), sum, r.Length, r.SHA256)
		}
		return data
	}

	t.Run("live server", func(t *testing.T) {
		verify(t, s.URL+"/tuf/metadata/", s.URL+"/tuf/targets/")
	})

	t.Run("static mirror", func(t *testing.T) {
		mirror := t.TempDir()
		out := s.mustCLI("", "repo", "export", mirror)
		if !strings.Contains(out, "1 targets fetched") {
			t.Errorf("export said %q", out)
		}
		fsrv := httptest.NewServer(http.FileServer(http.Dir(mirror)))
		defer fsrv.Close()
		verify(t, fsrv.URL+"/metadata/", fsrv.URL+"/targets/")
		// A second export reuses what is there.
		if out := s.mustCLI("", "repo", "export", mirror); !strings.Contains(out, "0 targets fetched, 1 already there") {
			t.Errorf("second export said %q", out)
		}
	})

	t.Run("altered on disk is refused", func(t *testing.T) {
		f := filepath.Join(s.Data, "targets", "acme-erp", r.SHA256+".acme-erp-1.1.0.tar.gz")
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)/2] ^= 0xff
		if err := os.WriteFile(f, b, 0o644); err != nil {
			t.Fatal(err)
		}
		up := tufClient(t, root, s.URL+"/tuf/metadata/", s.URL+"/tuf/targets/")
		if err := up.Refresh(); err != nil {
			t.Fatal(err)
		}
		ti, err := up.GetTargetInfo(r.Target)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := up.DownloadTarget(ti, "", ""); err == nil || !strings.Contains(err.Error(), "hash") {
			t.Fatalf("altered target: err = %v, want a hash mismatch", err)
		}
	})
}

// TestRepublishRefused: releases are immutable; the same version in another
// spelling is the same version.
func TestRepublishRefused(t *testing.T) {
	s := startServer(t)
	dir := writeBundle(t, "", map[string]string{"files/a": "a"})
	s.mustCLI(s.Admin, "release", "publish", "--product", "p", "--version", "1.0.0", dir)
	before := s.timestampVersion()
	for _, v := range []string{"1.0.0", "1.0"} {
		r := s.cli(s.Admin, "release", "publish", "--product", "p", "--version", v, dir)
		if r.code != 1 || !strings.Contains(r.stderr, "already published") {
			t.Errorf("republish %s: exit %d, stderr %q", v, r.code, r.stderr)
		}
	}
	if after := s.timestampVersion(); after != before {
		t.Errorf("timestamp moved from v%d to v%d on a refused publish", before, after)
	}
	// Over HTTP: 409 with the error envelope.
	up := uploadRaw(t, s, s.Admin, packDir(t, dir))
	code, body := s.api("POST", "/api/v1/releases", s.Admin, strings.NewReader(`{"upload_id":"`+up+`","product":"p","version":"1.0.0"}`))
	if code != http.StatusConflict || !bytes.Contains(body, []byte(`"code": "conflict"`)) {
		t.Errorf("HTTP republish: %d %s", code, body)
	}
}

// TestPromoteAndYank: promotion adds a channel without rebuilding; a yanked
// release shows its reason and cannot be promoted.
func TestPromoteAndYank(t *testing.T) {
	s := startServer(t)
	rel := s.newToken(protocol.RoleRelease)
	dir := writeBundle(t, "", map[string]string{"files/a": "a"})
	s.mustCLI(rel, "release", "publish", "--product", "p", "--version", "2.0.0", "--channel", "qa", dir)
	tsBefore := s.timestampVersion()
	s.mustCLI(rel, "release", "promote", "--product", "p", "--version", "2.0.0", "--channel", "stable")
	if got := s.mustCLI(rel, "release", "list", "--channel", "stable", "--json"); !strings.Contains(got, `"2.0.0"`) {
		t.Errorf("stable channel lacks 2.0.0: %s", got)
	}
	if s.timestampVersion() != tsBefore {
		t.Error("promotion re-signed metadata; it should only change the catalogue")
	}
	s.mustCLI(rel, "release", "yank", "--product", "p", "--version", "2.0", "--reason", "corrupts invoices")
	r := s.releases(rel)[0]
	if !r.Yanked || r.YankReason != "corrupts invoices" || r.YankedAt == nil {
		t.Errorf("after yank: %+v", r)
	}
	if res := s.cli(rel, "release", "promote", "--product", "p", "--version", "2.0.0", "--channel", "beta"); res.code != 1 || !strings.Contains(res.stderr, "yanked") {
		t.Errorf("promote yanked: exit %d %q", res.code, res.stderr)
	}
	if res := s.cli(rel, "release", "yank", "--product", "p", "--version", "3.0.0"); res.code != 1 || !strings.Contains(res.stderr, "not published") {
		t.Errorf("yank unknown: exit %d %q", res.code, res.stderr)
	}
	// The audit log names who did what.
	code, body := s.api("GET", "/api/v1/audit", s.Admin, nil)
	if code != 200 {
		t.Fatalf("audit: %d %s", code, body)
	}
	for _, want := range []string{"release.publish", "release.promote", "release.yank", "token.create", "release-test"} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("audit log lacks %q", want)
		}
	}
}

// TestConcurrentPublishes: publishes racing each other all land, each with
// its target, and the repository stays one consistent, verifiable chain.
func TestConcurrentPublishes(t *testing.T) {
	s := startServer(t)
	const n = 6
	dirs := make([]string, n)
	for i := range dirs {
		dirs[i] = writeBundle(t, "", map[string]string{"files/app": strings.Repeat("v", i+1)})
	}
	errs := make(chan string, n)
	for i := range n {
		go func() {
			r := s.cli(s.Admin, "release", "publish", "--product", "p", "--version", "1.0."+string(rune('0'+i)), dirs[i])
			if r.code != 0 {
				errs <- r.stderr
				return
			}
			errs <- ""
		}()
	}
	for range n {
		if e := <-errs; e != "" {
			t.Errorf("publish failed: %s", e)
		}
	}
	rs := s.releases(s.Admin)
	if len(rs) != n {
		t.Fatalf("%d releases, want %d", len(rs), n)
	}
	root, _ := os.ReadFile(filepath.Join(s.Data, "root.json"))
	up := tufClient(t, root, s.URL+"/tuf/metadata/", s.URL+"/tuf/targets/")
	if err := up.Refresh(); err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		ti, err := up.GetTargetInfo(r.Target)
		if err != nil {
			t.Fatalf("%s: %v", r.Target, err)
		}
		if _, _, err := up.DownloadTarget(ti, "", ""); err != nil {
			t.Fatalf("%s: %v", r.Target, err)
		}
	}
}
