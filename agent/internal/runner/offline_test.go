//go:build unix

package runner

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dropless/dropless/agent/internal/engine"
	"github.com/dropless/dropless/agent/internal/fetch"
	"github.com/dropless/dropless/agent/internal/tuftest"
	"github.com/dropless/dropless/pkg/airgap"
	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/pkg/testutil"
)

// offlineRepo is a real TUF repository (signed with real keys) holding the
// bundles of an agentSite, from which tests build air-gap files.
type offlineRepo struct {
	repo *tuftest.Repo
	site *agentSite
}

func newOfflineRepo(t *testing.T) *offlineRepo {
	srv := newAgentServer(t)
	s := newAgentSite(t, srv, "")
	repo := tuftest.New(t)
	sum := sha256.Sum256(repo.RootV1())
	s.cfg.RootSHA256 = hex.EncodeToString(sum[:])
	return &offlineRepo{repo: repo, site: s}
}

// add publishes version v of product (signed custom metadata for
// signedProduct) with upgradeFrom.
func (o *offlineRepo) add(t *testing.T, v, upgradeFrom, signedProduct string) airgap.Hop {
	a := o.site.release(t, v)
	b, err := os.ReadFile(filepath.Join(o.site.dir, v+".tar.gz"))
	if err != nil {
		t.Fatal(err)
	}
	o.repo.AddTarget("targets", a.Target, b, protocol.TargetCustom{Product: signedProduct, Version: v, UpgradeFrom: upgradeFrom})
	o.repo.Publish()
	return airgap.Hop{Version: v, Target: a.Target, Length: int64(len(b))}
}

// file writes an air-gap file of the repository as it is now, with hops;
// edit may change the mirror directory before it is packed.
func (o *offlineRepo) file(t *testing.T, edit func(dir string), hops ...airgap.Hop) string {
	dir := t.TempDir()
	o.repo.WriteDir(dir)
	if edit != nil {
		edit(dir)
	}
	m := airgap.Manifest{Product: product, Version: hops[len(hops)-1].Version, Hops: hops, Created: time.Now()}
	var buf bytes.Buffer
	if err := airgap.Write(&buf, dir, m); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "upgrade.airgap")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func (o *offlineRepo) apply(t *testing.T, file string) (OfflineResult, error) {
	return ApplyOffline(context.Background(), o.site.cfg, file, testutil.NewLog(t, slog.LevelInfo).Logger())
}

// TestApplyOffline upgrades a site from air-gap files with the network
// unused (the repository's own server is closed first): a first install,
// then two hops in one file; the signed report lists both jobs and
// verifies with the agent's credential.
func TestApplyOffline(t *testing.T) {
	o := newOfflineRepo(t)
	h1 := o.add(t, "1.0.0", "", product)
	first := o.file(t, nil, h1)
	h11 := o.add(t, "1.1.0", ">= 1.0", product)
	h2 := o.add(t, "2.0.0", ">= 1.1", product)
	hops := o.file(t, nil, h1, h11, h2)
	const cred = "agc_test-credential"
	if err := os.MkdirAll(o.site.cfg.DataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(o.site.cfg.DataDir, CredentialFile), []byte(cred+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	res, err := o.apply(t, first)
	if err != nil || !res.Succeeded() || res.Installed != "1.0.0" || o.site.running() != "1.0.0" {
		t.Fatalf("first install: %+v %v, running %q", res, err, o.site.running())
	}
	res, err = o.apply(t, hops)
	if err != nil || !res.Succeeded() || len(res.Jobs) != 2 || o.site.running() != "2.0.0" {
		t.Fatalf("two hops: %+v %v, running %q", res, err, o.site.running())
	}
	if res.Jobs[0].To != "1.1.0" || res.Jobs[1].From != "1.1.0" || res.Jobs[1].To != "2.0.0" {
		t.Errorf("jobs: %+v", res.Jobs)
	}
	sr, rep, err := airgap.ParseReport(res.Report)
	if err != nil {
		t.Fatal(err)
	}
	if err := sr.Verify(airgap.CredentialKey(cred)); err != nil {
		t.Errorf("report signature: %v", err)
	}
	if rep.InstalledVersion != "2.0.0" || rep.Site != "acme-prod" || len(rep.Jobs) != 2 || rep.Jobs[1].Result != protocol.ResultSucceeded {
		t.Errorf("report: %+v", rep)
	}
	if last := rep.Jobs[1].Events[len(rep.Jobs[1].Events)-1]; last.State != protocol.StateCommitted {
		t.Errorf("last event %+v", last)
	}
	// Applying the same file again does nothing.
	res, err = o.apply(t, hops)
	if err != nil || len(res.Jobs) != 1 || res.Jobs[0].Result != protocol.ResultSucceeded || o.site.running() != "2.0.0" {
		t.Fatalf("again: %+v %v", res, err)
	}
}

// TestApplyOfflineRefusals: files that are truncated, damaged, tampered
// with (bundle or metadata), signed under another root, expired or of
// another product are refused, and the installed version keeps running.
func TestApplyOfflineRefusals(t *testing.T) {
	o := newOfflineRepo(t)
	h1 := o.add(t, "1.0.0", "", product)
	if res, err := o.apply(t, o.file(t, nil, h1)); err != nil || !res.Succeeded() {
		t.Fatalf("first install: %+v %v", res, err)
	}
	h2 := o.add(t, "2.0.0", ">= 1.0", product)
	good := o.file(t, nil, h2)
	goodBytes, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	writeFile := func(b []byte) string {
		p := filepath.Join(t.TempDir(), "bad.airgap")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	targetFile := func(dir string) string {
		var found string
		filepath.Walk(filepath.Join(dir, "targets"), func(p string, fi os.FileInfo, err error) error {
			if err == nil && strings.HasSuffix(p, "-2.0.0.tar.gz") {
				found = p
			}
			return nil
		})
		return found
	}
	flip := func(p string) {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)/2] ^= 0xff
		os.WriteFile(p, b, 0o644)
	}
	tests := []struct {
		name string
		file func(t *testing.T) string
		// job: the refusal ends a job failed (the signed target was
		// read) rather than refusing the file before any job.
		job  bool
		want string
	}{
		{name: "truncated", file: func(t *testing.T) string { return writeFile(goodBytes[:len(goodBytes)-3000]) }, want: "truncated"},
		{name: "damaged bundle", file: func(t *testing.T) string {
			b := bytes.Clone(goodBytes)
			b[len(b)-2000] ^= 0xff // inside the bundle, the last entry
			return writeFile(b)
		}, want: "damaged"},
		{name: "tampered bundle, manifest rewritten", file: func(t *testing.T) string {
			return o.file(t, func(dir string) { flip(targetFile(dir)) }, h2)
		}, job: true, want: "sha256 mismatch"},
		{name: "tampered metadata", file: func(t *testing.T) string {
			return o.file(t, func(dir string) {
				// The timestamp is read every time (metadata the client
				// trusts already is not read again): its expiry pushed a
				// year on, as a freeze attack would.
				p := filepath.Join(dir, "metadata", "timestamp.json")
				b, _ := os.ReadFile(p)
				y := time.Now().UTC().Add(o.repo.TimestampExpiry).Year()
				nb := bytes.Replace(b, fmt.Appendf(nil, `"expires": "%d`, y), fmt.Appendf(nil, `"expires": "%d`, y+1), 1)
				if bytes.Equal(b, nb) {
					t.Fatal("nothing tampered")
				}
				os.WriteFile(p, nb, 0o644)
			}, h2)
		}, want: "does not verify"},
		{name: "other product in the manifest", file: func(t *testing.T) string {
			p := o.file(t, nil, h2)
			b, _ := os.ReadFile(p)
			return writeFile(bytes.Replace(b, []byte(`"product": "acme-erp"`), []byte(`"product": "acme-xyz"`), 1))
		}, want: "for product acme-xyz"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := o.apply(t, tc.file(t))
			if tc.job {
				if err != nil || len(res.Jobs) != 1 || res.Jobs[0].Result != protocol.ResultFailed {
					t.Fatalf("want one failed job, got %+v %v", res.Jobs, err)
				}
				st, _ := engine.ReadStatus(o.site.cfg.DataDir)
				if !strings.Contains(strings.ToLower(st.LastError), tc.want) {
					t.Errorf("last error %q, want %q", st.LastError, tc.want)
				}
			} else {
				if err == nil || len(res.Jobs) != 0 {
					t.Fatalf("want a refusal before any job, got %+v %v", res.Jobs, err)
				}
				t.Logf("refused: %v", err)
				if !strings.Contains(err.Error(), tc.want) {
					t.Errorf("error %q, want %q", err, tc.want)
				}
			}
			if got := o.site.running(); got != "1.0.0" {
				t.Errorf("running %q after the refusal", got)
			}
		})
	}

	t.Run("signed for another product", func(t *testing.T) {
		h := o.add(t, "2.1.0", ">= 1.0", "other-app")
		res, err := o.apply(t, o.file(t, nil, h))
		if err != nil || len(res.Jobs) != 1 || res.Jobs[0].Result != protocol.ResultFailed || o.site.running() != "1.0.0" {
			t.Fatalf("%+v %v, running %q", res.Jobs, err, o.site.running())
		}
	})
	t.Run("wrong root", func(t *testing.T) {
		other := newOfflineRepo(t)
		h := other.add(t, "2.0.0", ">= 1.0", product)
		_, err := o.apply(t, other.file(t, nil, h))
		t.Logf("refused: %v", err)
		if !errors.Is(err, fetch.ErrRootPin) && (err == nil || !strings.Contains(err.Error(), "does not verify")) {
			t.Fatalf("want a refusal by the pinned root, got %v", err)
		}
		if o.site.running() != "1.0.0" {
			t.Errorf("running %q", o.site.running())
		}
	})
	t.Run("wrong root, fresh agent", func(t *testing.T) {
		other := newOfflineRepo(t)
		h := other.add(t, "1.0.0", "", product)
		other.site.cfg.RootSHA256 = o.site.cfg.RootSHA256 // pins o's root
		_, err := other.apply(t, other.file(t, nil, h))
		t.Logf("refused: %v", err)
		if !errors.Is(err, fetch.ErrRootPin) {
			t.Fatalf("want a root pin refusal, got %v", err)
		}
		if other.site.running() != "" {
			t.Errorf("running %q", other.site.running())
		}
	})
	t.Run("expired", func(t *testing.T) {
		o.repo.TimestampExpiry = -time.Hour
		o.repo.PublishSnapshot()
		defer func() { o.repo.TimestampExpiry = 24 * time.Hour; o.repo.PublishSnapshot() }()
		_, err := o.apply(t, o.file(t, nil, h2))
		t.Logf("refused: %v", err)
		if err == nil || !strings.Contains(err.Error(), "expired") {
			t.Fatalf("want expired, got %v", err)
		}
	})
}
