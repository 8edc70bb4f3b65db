package tufrepo

import (
	"crypto/ed25519"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/dropless/dropless/pkg/protocol"
)

var sum = strings.Repeat("ab", 32)

func newRepo(t *testing.T) (Repo, Set, time.Time) {
	t.Helper()
	r := Repo{Keys: KeyStore{Dir: filepath.Join(t.TempDir(), "keys")}, Expiry: DefaultExpiry()}
	if err := r.Keys.Generate(); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	set, err := r.Initial(now)
	if err != nil {
		t.Fatal(err)
	}
	return r, set, now
}

func mustTarget(t *testing.T, version string) *metadata.TargetFiles {
	t.Helper()
	tf, err := NewTargetFile(protocol.TargetCustom{Product: "acme-erp", Version: version, UpgradeFrom: ">= 1.0, < 2.0"}, sum, 42)
	if err != nil {
		t.Fatal(err)
	}
	return tf
}

func TestInitialVerifies(t *testing.T) {
	_, set, _ := newRepo(t)
	root, err := parse[metadata.RootType](set.Root)
	if err != nil {
		t.Fatal(err)
	}
	if !root.Signed.ConsistentSnapshot {
		t.Error("consistent snapshots are off")
	}
	if err := root.VerifyDelegate(RoleRoot, root); err != nil {
		t.Errorf("root: %v", err)
	}
	targets, _ := parse[metadata.TargetsType](set.Targets)
	snap, _ := parse[metadata.SnapshotType](set.Snapshot)
	ts, _ := parse[metadata.TimestampType](set.Timestamp)
	for role, md := range map[string]any{RoleTargets: targets, RoleSnapshot: snap, RoleTimestamp: ts} {
		if err := root.VerifyDelegate(role, md); err != nil {
			t.Errorf("%s: %v", role, err)
		}
	}
}

func TestCheckTargetsUpdate(t *testing.T) {
	r, set, now := newRepo(t)
	signer, err := r.Keys.Signer(RoleTargets)
	if err != nil {
		t.Fatal(err)
	}
	_, otherPriv, _ := ed25519.GenerateKey(nil)
	other, _ := newSigner(otherPriv)
	path := protocol.TargetPath("acme-erp", "1.1.0")
	want := mustTarget(t, "1.1.0")
	exp := now.Add(time.Hour)

	good, err := AddTarget(set.Targets, path, want, exp, signer)
	if err != nil {
		t.Fatal(err)
	}
	wrongKey, _ := AddTarget(set.Targets, path, want, exp, other)
	wrongHash := mustTarget(t, "1.1.0")
	wrongHash.Length = 43
	altered, _ := AddTarget(set.Targets, path, wrongHash, exp, signer)
	wrongCustom, _ := AddTarget(set.Targets, path, mustTarget(t, "6.6.6"), exp, signer)
	expired, _ := AddTarget(set.Targets, path, want, now.Add(-time.Hour), signer)
	extra, _ := AddTarget(good, "evil/evil.tar.gz", mustTarget(t, "1.1.0"), exp, signer)

	tests := []struct {
		name    string
		next    []byte
		wantErr string
	}{
		{"signed by targets key", good, ""},
		{"signed by another key", wrongKey, "not signed by the root's targets key"},
		{"length differs from upload", altered, "does not match the uploaded bundle"},
		{"custom metadata differs", wrongCustom, "does not match the uploaded bundle"},
		{"expired", expired, "expired"},
		{"skips a version", extra, "version is 3 but the next version is 2"},
		{"garbage", []byte("{}"), "not valid targets metadata"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckTargetsUpdate(set.Root, set.Targets, tt.next, path, want, now)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			if !errors.Is(err, ErrBadTargets) {
				t.Fatalf("err %v does not wrap ErrBadTargets", err)
			}
		})
	}
}

func TestVerifySignedBy(t *testing.T) {
	r, set, _ := newRepo(t)
	signer, _ := r.Keys.Signer(RoleTargets)
	if err := VerifySignedBy(set.Targets, signer); err != nil {
		t.Fatalf("own metadata refused: %v", err)
	}
	_, otherPriv, _ := ed25519.GenerateKey(nil)
	other, _ := newSigner(otherPriv)
	if err := VerifySignedBy(set.Targets, other); err == nil {
		t.Fatal("metadata signed by another key accepted")
	}
}

func TestRefresh(t *testing.T) {
	r, set, now := newRepo(t)
	next, changed, _, err := r.Refresh(set, now.Add(time.Hour))
	if err != nil || len(changed) != 0 {
		t.Fatalf("fresh metadata re-signed: %v %v", changed, err)
	}
	if string(next.Timestamp) != string(set.Timestamp) {
		t.Fatal("timestamp changed though nothing was due")
	}
	// 20h into a 24h timestamp: re-sign the timestamp only.
	next, changed, _, err = r.Refresh(set, now.Add(20*time.Hour))
	if err != nil || strings.Join(changed, ",") != "timestamp" {
		t.Fatalf("changed = %v, %v; want timestamp", changed, err)
	}
	ts, _ := parse[metadata.TimestampType](next.Timestamp)
	if ts.Signed.Version != 2 || !ts.Signed.Expires.After(now.Add(40*time.Hour)) {
		t.Fatalf("timestamp v%d expires %v", ts.Signed.Version, ts.Signed.Expires)
	}
	// Six days in: snapshot is due too.
	_, changed, _, err = r.Refresh(set, now.Add(6*24*time.Hour))
	if err != nil || strings.Join(changed, ",") != "snapshot,timestamp" {
		t.Fatalf("changed = %v, %v; want snapshot,timestamp", changed, err)
	}
	// Targets due with the key offline: a warning, not an error.
	if err := removeKey(r, RoleTargets); err != nil {
		t.Fatal(err)
	}
	_, changed, warnings, err := r.Refresh(set, now.Add(300*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) == 0 || !strings.Contains(strings.Join(warnings, ";"), "targets key is offline") {
		t.Fatalf("warnings = %v", warnings)
	}
	if strings.Join(changed, ",") != "snapshot,timestamp" {
		t.Fatalf("changed = %v", changed)
	}
}
