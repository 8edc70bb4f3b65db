package cli_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/publish"
	"github.com/dropless/dropless/updateserver/internal/tufrepo"
)

// TestOfflineTargetsKey moves the targets key off a quick-start server and
// publishes with --sign-key: the server cannot sign releases any more, an
// update signed with the right key is accepted and verified by go-tuf, and
// targets metadata signed with another key is refused.
func TestOfflineTargetsKey(t *testing.T) {
	s := startServer(t)
	rel := s.newToken(protocol.RoleRelease)
	keyFile := filepath.Join(t.TempDir(), "targets.pem")

	out := s.mustCLI("", "key", "export", "--data", s.Data, "--role", "targets", "--out", keyFile, "--remove")
	if !strings.Contains(out, "removed") {
		t.Errorf("export said %q", out)
	}
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("exported key: %v %v", fi, err)
	}
	if _, err := os.Stat(filepath.Join(s.Data, "keys", "targets.pem")); !os.IsNotExist(err) {
		t.Fatalf("targets key still on the server: %v", err)
	}
	if list := s.mustCLI("", "key", "list", "--data", s.Data); !strings.Contains(strings.Join(strings.Fields(list), " "), "targets offline") {
		t.Errorf("key list: %s", list)
	}

	dir := writeBundle(t, "", map[string]string{"files/app": "v2"})
	before := s.state()
	r := s.cli(rel, "release", "publish", "--product", "acme-erp", "--version", "2.0.0", dir)
	if r.code != 1 || !strings.Contains(r.stderr, "--sign-key") {
		t.Fatalf("publish without the key: exit %d %q", r.code, r.stderr)
	}
	if after := s.state(); after.releases != before.releases || after.timestamp != before.timestamp {
		t.Fatalf("refused publish changed state: %+v -> %+v", before, after)
	}

	out = s.mustCLI(rel, "release", "publish", "--product", "acme-erp", "--version", "2.0.0", "--channel", "stable", "--sign-key", keyFile, dir)
	if !strings.Contains(out, "published acme-erp 2.0.0") {
		t.Errorf("publish said %q", out)
	}
	root, _ := os.ReadFile(filepath.Join(s.Data, "root.json"))
	up := tufClient(t, root, s.URL+"/tuf/metadata/", s.URL+"/tuf/targets/")
	if err := up.Refresh(); err != nil {
		t.Fatal(err)
	}
	ti, err := up.GetTargetInfo(protocol.TargetPath("acme-erp", "2.0.0"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := up.DownloadTarget(ti, "", ""); err != nil {
		t.Fatalf("offline-signed target does not verify: %v", err)
	}

	// A second offline publish extends the first (version chain intact),
	// from a ready-made .tar.gz: sent as the file itself and hashed by a
	// second reader meanwhile; what was signed is what agents verify.
	dir3 := writeBundle(t, "", map[string]string{"files/app": "v3"})
	tgz3 := filepath.Join(t.TempDir(), "acme-erp-3.0.0.tar.gz")
	if err := os.WriteFile(tgz3, packDir(t, dir3), 0o644); err != nil {
		t.Fatal(err)
	}
	s.mustCLI(rel, "release", "publish", "--product", "acme-erp", "--version", "3.0.0", "--sign-key", keyFile, tgz3)
	up = tufClient(t, root, s.URL+"/tuf/metadata/", s.URL+"/tuf/targets/")
	if err := up.Refresh(); err != nil {
		t.Fatal(err)
	}
	ti3, err := up.GetTargetInfo(protocol.TargetPath("acme-erp", "3.0.0"))
	if err != nil {
		t.Fatal(err)
	}
	want3 := sha256.Sum256(packDir(t, dir3))
	if got := ti3.Hashes["sha256"].String(); got != hex.EncodeToString(want3[:]) {
		t.Errorf("signed sha256 %s, want the file's %x", got, want3)
	}
	if _, _, err := up.DownloadTarget(ti3, "", ""); err != nil {
		t.Fatalf("offline-signed target from a .tar.gz does not verify: %v", err)
	}

	// Someone with another key (a thief of the server, say) is refused,
	// whether through the CLI (which checks the server's metadata first)
	// or by posting forged metadata directly.
	_, otherPriv, _ := ed25519.GenerateKey(rand.Reader)
	pemBytes, _ := tufrepo.MarshalPrivateKey(otherPriv)
	otherKey := filepath.Join(t.TempDir(), "other.pem")
	os.WriteFile(otherKey, pemBytes, 0o600)
	dir4 := writeBundle(t, "", map[string]string{"files/app": "evil"})
	before = s.state()
	if r := s.cli(rel, "release", "publish", "--product", "acme-erp", "--version", "4.0.0", "--sign-key", otherKey, dir4); r.code != 1 || !strings.Contains(r.stderr, "not signed by this key") {
		t.Errorf("publish with the wrong key: exit %d %q", r.code, r.stderr)
	}

	var upl protocol.Upload
	code, b := s.api("POST", "/api/v1/uploads", rel, strings.NewReader(string(packDir(t, dir4))))
	json.Unmarshal(b, &upl)
	if code != 201 {
		t.Fatalf("upload: %d %s", code, b)
	}
	forger, _ := tufrepo.ParseSigner(pemBytes)
	cur := []byte(nil)
	if code, b := s.api("GET", "/api/v1/repo/targets", rel, nil); code == 200 {
		var rt protocol.RepoTargets
		json.Unmarshal(b, &rt)
		cur = rt.Targets
	}
	relInfo := publish.Effective(upl, protocol.PublishRequest{Product: "acme-erp", Version: "4.0.0"})
	path, tf, err := publish.TargetFor(relInfo)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := tufrepo.AddTarget(cur, path, tf, time.Now().Add(time.Hour), forger)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := json.Marshal(protocol.PublishRequest{UploadID: upl.ID, Product: "acme-erp", Version: "4.0.0", TargetsMetadata: forged})
	code, b = s.api("POST", "/api/v1/releases", rel, strings.NewReader(string(req)))
	if code != 400 || !strings.Contains(string(b), "not signed by the root's targets key") {
		t.Errorf("forged targets metadata: %d %s", code, b)
	}
	after := s.state()
	if after.releases != before.releases || after.timestamp != before.timestamp || after.targets != before.targets {
		t.Errorf("refused publishes changed state: %+v -> %+v", before, after)
	}
}
