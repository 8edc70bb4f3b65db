package fetch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/dropless/dropless/agent/internal/tuftest"
	"github.com/dropless/dropless/pkg/protocol"
)

// TestHappyPath: pinned bootstrap, refresh, target with custom metadata,
// streamed download to the hash-prefixed URL; the second download of the
// same target makes no request at all.
func TestHappyPath(t *testing.T) {
	ctx := context.Background()
	repo := newTestRepo(t)
	bundle := []byte(strings.Repeat("acme bundle bytes ", 5000))
	tpath := protocol.TargetPath("acme", "1.0")
	repo.AddTarget(metadata.TARGETS, tpath, bundle, protocol.TargetCustom{Product: "acme", Version: "1.0", UpgradeFrom: ">=0.9"})
	repo.Publish()

	dir := t.TempDir()
	c := repo.client(dir, nil)
	if err := c.Bootstrap(ctx); err != nil {
		t.Fatalf("Bootstrap: %v", err)
	}
	if err := c.Refresh(ctx); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	for _, name := range []string{"root.json", "timestamp.json", "snapshot.json", "targets.json"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("trusted metadata %s: %v", name, err)
		}
	}
	tg, err := c.Target(ctx, tpath)
	if err != nil {
		t.Fatalf("Target: %v", err)
	}
	sum := sha256.Sum256(bundle)
	if tg.Length != int64(len(bundle)) || tg.Hashes["sha256"] != hex.EncodeToString(sum[:]) || tg.Hashes["sha512"] == "" {
		t.Fatalf("Target = %+v, want length %d and sha256 %x (and a sha512)", tg, len(bundle), sum)
	}
	custom, err := protocol.ParseTargetCustom(tg.Custom)
	if err != nil || custom.Product != "acme" || custom.Version != "1.0" || custom.UpgradeFrom != ">=0.9" {
		t.Fatalf("custom = %+v, %v", custom, err)
	}

	tdir := t.TempDir()
	dst := filepath.Join(tdir, LocalName(tpath))
	res, err := c.Download(ctx, tg, dst)
	if err != nil {
		t.Fatalf("Download: %v", err)
	}
	if res.Reused || res.Bytes != int64(len(bundle)) || res.Resumes != 0 {
		t.Errorf("Download = %+v, want %d fresh bytes", res, len(bundle))
	}
	got, err := os.ReadFile(dst)
	if err != nil || string(got) != string(bundle) {
		t.Fatalf("dst holds %d bytes (%v), want the bundle", len(got), err)
	}
	reqs := repo.Requests()
	wantPath := "/targets/acme/" + hex.EncodeToString(sum[:]) + ".acme-1.0.tar.gz"
	if last := reqs[len(reqs)-1]; last.Path != wantPath || last.Range != "" {
		t.Errorf("target request = %+v, want GET %s without Range", last, wantPath)
	}
	if _, err := os.Stat(dst + ".part"); !os.IsNotExist(err) {
		t.Errorf(".part left behind: %v", err)
	}

	res, err = c.Download(ctx, tg, dst)
	if err != nil || !res.Reused || res.Bytes != 0 {
		t.Fatalf("second Download = %+v, %v; want reused", res, err)
	}
	if n := len(repo.Requests()); n != len(reqs) {
		t.Errorf("second Download made %d requests, want none", n-len(reqs))
	}
}

func TestBootstrap(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name     string
		setup    func(t *testing.T, repo *testRepo, dir string, cfg *Config)
		wantKind Kind   // "" for success
		wantMsg  string // in the error
		wantRoot bool   // root.json stored afterwards
		wantReqs int
	}{
		{
			name:     "right pin",
			wantRoot: true,
			wantReqs: 1,
		},
		{
			name: "wrong pin",
			setup: func(t *testing.T, repo *testRepo, dir string, cfg *Config) {
				cfg.RootSHA256 = strings.Repeat("ab", 32)
			},
			wantKind: ErrRootPin,
			wantMsg:  "root.json from " + "URL" + "/metadata/1.root.json has sha256 ",
			wantReqs: 1,
		},
		{
			name: "no pin and no root",
			setup: func(t *testing.T, repo *testRepo, dir string, cfg *Config) {
				cfg.RootSHA256 = ""
			},
			wantKind: ErrNoRoot,
			wantMsg:  "no root_sha256 pin",
		},
		{
			name: "root already trusted",
			setup: func(t *testing.T, repo *testRepo, dir string, cfg *Config) {
				if err := os.WriteFile(filepath.Join(dir, "root.json"), repo.RootV1(), 0o644); err != nil {
					t.Fatal(err)
				}
				cfg.RootSHA256 = strings.Repeat("ab", 32) // not consulted
			},
			wantRoot: true,
		},
		{
			name: "corrupt root fetched again with the pin",
			setup: func(t *testing.T, repo *testRepo, dir string, cfg *Config) {
				if err := os.WriteFile(filepath.Join(dir, "root.json"), nil, 0o644); err != nil {
					t.Fatal(err)
				}
			},
			wantRoot: true,
			wantReqs: 1,
		},
		{
			name: "no root served",
			setup: func(t *testing.T, repo *testRepo, dir string, cfg *Config) {
				cfg.MetadataURL = repo.URL() + "/elsewhere/"
			},
			wantKind: ErrNotFound,
			wantMsg:  "root: not found at",
			wantReqs: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repo := newTestRepo(t)
			dir := t.TempDir()
			cfg := repo.config(dir)
			if tt.setup != nil {
				tt.setup(t, repo, dir, &cfg)
			}
			c, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			err = c.Bootstrap(ctx)
			wantMsg := strings.ReplaceAll(tt.wantMsg, "URL", repo.URL())
			switch {
			case tt.wantKind == "" && err != nil:
				t.Fatalf("Bootstrap: %v", err)
			case tt.wantKind != "" && (!errors.Is(err, tt.wantKind) || !strings.Contains(err.Error(), wantMsg)):
				t.Fatalf("Bootstrap = %v, want %s containing %q", err, tt.wantKind, wantMsg)
			}
			if err != nil {
				t.Logf("refused: %v", err)
			}
			stored, rerr := os.ReadFile(filepath.Join(dir, "root.json"))
			if tt.wantRoot != (rerr == nil) {
				t.Fatalf("root.json stored: %v, want %v", rerr == nil, tt.wantRoot)
			}
			if tt.wantRoot && string(stored) != string(repo.RootV1()) {
				t.Errorf("root.json is not the pinned root")
			}
			if !tt.wantRoot {
				if entries, _ := os.ReadDir(dir); len(entries) != 0 {
					t.Errorf("metadata dir holds %v after a refusal, want nothing", entries)
				}
			}
			if n := len(repo.Requests()); n != tt.wantReqs {
				t.Errorf("%d requests, want %d", n, tt.wantReqs)
			}
		})
	}
}

// TestInit: the root given to Init is trusted without any request, and
// a pin, when set, still applies.
func TestInit(t *testing.T) {
	ctx := context.Background()
	repo := newTestRepo(t)
	dir := t.TempDir()

	bad := repo.client(dir, func(cfg *Config) { cfg.RootSHA256 = strings.Repeat("0", 64) })
	if err := bad.Init(repo.RootV1()); !errors.Is(err, ErrRootPin) {
		t.Fatalf("Init with a wrong pin = %v, want %s", err, ErrRootPin)
	}
	c := repo.client(dir, func(cfg *Config) { cfg.RootSHA256 = "" })
	if err := c.Init([]byte(`{"signed":{"_type":"targets"}}`)); !errors.Is(err, ErrBadMetadata) {
		t.Fatalf("Init with a non-root = %v, want %s", err, ErrBadMetadata)
	}
	if err := c.Init(repo.RootV1()); err != nil {
		t.Fatalf("Init: %v", err)
	}
	if n := len(repo.Requests()); n != 0 {
		t.Fatalf("Init made %d requests", n)
	}
	if err := c.Bootstrap(ctx); err != nil {
		t.Fatalf("Bootstrap after Init: %v", err)
	}
	if err := c.Refresh(ctx); err != nil {
		t.Fatalf("Refresh after Init: %v", err)
	}
}

// TestRefreshRefusals plays the attacks of the TUF spec against a client
// that already trusts a good state: each is refused with the expected kind
// and message, and the trusted metadata files are left as they were.
func TestRefreshRefusals(t *testing.T) {
	tests := []struct {
		name     string
		attack   func(t *testing.T, repo *testRepo, c *Client)
		refTime  time.Duration // from now, for the refused Refresh
		wantKind Kind
		wantRole string
		wantMsg  string
		// moved are the files a refused Refresh may change: metadata
		// verified before the refused one.
		moved []string
	}{
		{
			name: "targets signed by a key the root does not trust",
			attack: func(t *testing.T, repo *testRepo, c *Client) {
				repo.Keys[metadata.TARGETS] = []*tuftest.Key{tuftest.NewKey(t)}
				repo.AddTarget(metadata.TARGETS, "acme/evil.tar.gz", []byte("evil"), nil)
				repo.Publish()
			},
			wantKind: ErrBadSignature,
			wantRole: metadata.TARGETS,
			wantMsg:  "targets metadata: bad signature",
			moved:    []string{"timestamp.json", "snapshot.json"},
		},
		{
			name: "timestamp signed by a key the root does not trust",
			attack: func(t *testing.T, repo *testRepo, c *Client) {
				repo.Keys[metadata.TIMESTAMP] = []*tuftest.Key{tuftest.NewKey(t)}
				repo.Publish()
			},
			wantKind: ErrBadSignature,
			wantRole: metadata.TIMESTAMP,
			wantMsg:  "timestamp: bad signature (0 valid of the 1 required)",
		},
		{
			name: "timestamp rolled back",
			attack: func(t *testing.T, repo *testRepo, c *Client) {
				old := repo.Meta("timestamp.json")
				repo.Publish()
				if err := c.Refresh(context.Background()); err != nil { // now trusts timestamp 3
					t.Fatal(err)
				}
				repo.SetMeta("timestamp.json", old)
			},
			wantKind: ErrRollback,
			wantRole: metadata.TIMESTAMP,
			wantMsg:  "timestamp: version 2 is lower than the trusted 3 (rollback attack?)",
		},
		{
			name: "snapshot rolled back by a new timestamp",
			attack: func(t *testing.T, repo *testRepo, c *Client) {
				repo.PublishTimestamp(1)
			},
			wantKind: ErrRollback,
			wantRole: metadata.SNAPSHOT,
			wantMsg:  "snapshot: version 1 (listed by the new timestamp) is lower than the trusted 2 (rollback attack?)",
		},
		{
			name:     "freeze: the timestamp is no longer renewed",
			refTime:  48 * time.Hour,
			wantKind: ErrExpired,
			wantRole: metadata.TIMESTAMP,
			wantMsg:  "timestamp: expired at ",
		},
		{
			name: "snapshot that is not the one the timestamp lists",
			attack: func(t *testing.T, repo *testRepo, c *Client) {
				repo.Publish() // snapshot 3, timestamp 3
				// Same version, one second more of life: same length, other bytes.
				repo.Snapshot.Signed.Expires = repo.Snapshot.Signed.Expires.Add(time.Second)
				repo.SetMeta("3.snapshot.json", tuftest.Sign(t, repo.Snapshot, repo.Keys[metadata.SNAPSHOT]...))
			},
			wantKind: ErrHashMismatch,
			wantRole: metadata.SNAPSHOT,
			wantMsg:  "snapshot: does not match the length and hashes the timestamp lists",
			moved:    []string{"timestamp.json"},
		},
		{
			name: "oversized timestamp",
			attack: func(t *testing.T, repo *testRepo, c *Client) {
				repo.SetMeta("timestamp.json", []byte(`{"signed":{}, "pad":"`+strings.Repeat("x", 20000)+`"}`))
			},
			wantKind: ErrLengthExceeded,
			wantRole: metadata.TIMESTAMP,
			wantMsg:  "timestamp: ",
		},
		{
			name: "timestamp missing",
			attack: func(t *testing.T, repo *testRepo, c *Client) {
				repo.SetMeta("timestamp.json", nil)
				repo.DeleteMeta("timestamp.json")
			},
			wantKind: ErrNotFound,
			wantRole: metadata.TIMESTAMP,
			wantMsg:  "timestamp: not found at ",
		},
		{
			name: "new root signed by the new key only",
			attack: func(t *testing.T, repo *testRepo, c *Client) {
				repo.ReplaceRootKey(metadata.ROOT, false, true)
			},
			wantKind: ErrBadSignature,
			wantRole: metadata.ROOT,
			wantMsg:  "root: bad signature",
		},
		{
			name: "new root signed by the old key only",
			attack: func(t *testing.T, repo *testRepo, c *Client) {
				repo.ReplaceRootKey(metadata.ROOT, true, false)
			},
			wantKind: ErrBadSignature,
			wantRole: metadata.ROOT,
			wantMsg:  "root: bad signature",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			repo := newTestRepo(t)
			repo.AddTarget(metadata.TARGETS, "acme/acme-1.0.tar.gz", []byte("v1"), nil)
			repo.Publish() // targets, snapshot and timestamp 2
			dir := t.TempDir()
			var ref time.Time
			c := repo.client(dir, func(cfg *Config) {
				cfg.RefTime = func() time.Time {
					if ref.IsZero() {
						return time.Now()
					}
					return ref
				}
			})
			repo.mustRefresh(c)
			if tt.attack != nil {
				tt.attack(t, repo, c)
			}
			before := tuftest.DirFiles(t, dir)
			if tt.refTime != 0 {
				ref = time.Now().Add(tt.refTime)
			}
			err := c.Refresh(ctx)
			t.Logf("Refresh: %v", err)
			e, ok := errors.AsType[*Error](err)
			if !ok || !errors.Is(err, tt.wantKind) || e.Role != tt.wantRole || !strings.HasPrefix(err.Error(), tt.wantMsg) {
				t.Fatalf("Refresh = %v, want %s for role %s, starting %q", err, tt.wantKind, tt.wantRole, tt.wantMsg)
			}
			if Reason(err) != string(tt.wantKind) {
				t.Errorf("Reason = %q, want %q", Reason(err), tt.wantKind)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("message is not one line: %q", err)
			}
			after := tuftest.DirFiles(t, dir)
			if len(after) != len(before) {
				t.Errorf("metadata dir has %d files, had %d", len(after), len(before))
			}
			for name, b := range before {
				if after[name] != b && !slices.Contains(tt.moved, name) {
					t.Errorf("trusted %s changed by a refused refresh", name)
				}
			}
			if refused := after[tt.wantRole+".json"]; refused != before[tt.wantRole+".json"] {
				t.Errorf("the refused %s.json was stored", tt.wantRole)
			}
			if _, err := c.Target(ctx, "acme/acme-1.0.tar.gz"); err == nil {
				t.Errorf("Target after a refused Refresh succeeded")
			}
		})
	}
}

// TestRootRotation: the client follows 2.root.json signed by the old and
// the new root keys, which also replaces the timestamp key, and then
// trusts only timestamps from the new key.
func TestRootRotation(t *testing.T) {
	ctx := context.Background()
	repo := newTestRepo(t)
	dir := t.TempDir()
	c := repo.client(dir, nil)
	repo.mustRefresh(c)

	repo.ReplaceRootKey(metadata.ROOT, true, true)                    // 2.root.json
	_, root3 := repo.ReplaceRootKey(metadata.TIMESTAMP, false, false) // 3.root.json, by the new root key
	repo.Publish()
	if err := c.Refresh(ctx); err != nil {
		t.Fatalf("Refresh across the rotation: %v", err)
	}
	stored, _ := os.ReadFile(filepath.Join(dir, "root.json"))
	if string(stored) != string(root3) {
		t.Fatalf("trusted root.json is not 3.root.json")
	}
	var paths []string
	for _, r := range repo.Requests() {
		paths = append(paths, r.Path)
	}
	if !strings.Contains(strings.Join(paths, " "), "/metadata/2.root.json /metadata/3.root.json /metadata/4.root.json /metadata/timestamp.json") {
		t.Errorf("requests %v: want 2, 3, 4 (404) .root.json, then timestamp.json", paths)
	}

	// A timestamp signed by the old, now revoked, timestamp key is refused.
	old := repo.Keys[metadata.TIMESTAMP]
	repo.Keys[metadata.TIMESTAMP] = []*tuftest.Key{tuftest.NewKey(t)}
	repo.Publish()
	repo.Keys[metadata.TIMESTAMP] = old
	if err := c.Refresh(ctx); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("Refresh with a timestamp from a revoked key = %v, want %s", err, ErrBadSignature)
	}
}

// TestDelegation: a target listed by a delegated role is found through the
// delegation graph, and the role's metadata is kept as <role>.json.
func TestDelegation(t *testing.T) {
	ctx := context.Background()
	repo := newTestRepo(t)
	repo.Delegate("acme", "acme/*")
	data := []byte("delegated bundle")
	repo.AddTarget("acme", "acme/acme-2.0.tar.gz", data, protocol.TargetCustom{Product: "acme", Version: "2.0"})
	repo.Publish()
	dir := t.TempDir()
	c := repo.client(dir, nil)
	repo.mustRefresh(c)

	tg, err := c.Target(ctx, "acme/acme-2.0.tar.gz")
	if err != nil {
		t.Fatalf("Target: %v", err)
	}
	if tg.Length != int64(len(data)) || len(tg.Custom) == 0 {
		t.Fatalf("Target = %+v", tg)
	}
	if _, err := os.Stat(filepath.Join(dir, "acme.json")); err != nil {
		t.Errorf("delegated metadata not stored: %v", err)
	}
	dst := filepath.Join(t.TempDir(), LocalName(tg.Path))
	if _, err := c.Download(ctx, tg, dst); err != nil {
		t.Fatalf("Download: %v", err)
	}

	_, err = c.Target(ctx, "other/thing.tar.gz")
	if !errors.Is(err, ErrNotFound) || err.Error() != "target other/thing.tar.gz: no trusted targets metadata lists it" {
		t.Fatalf("Target of an unlisted path = %v", err)
	}

	// The delegated role signed by a key the delegation does not name.
	repo.Keys["acme"] = []*tuftest.Key{tuftest.NewKey(t)}
	repo.Publish()
	if err := c.Refresh(ctx); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	_, err = c.Target(ctx, "acme/acme-2.0.tar.gz")
	if !errors.Is(err, ErrBadSignature) || !strings.HasPrefix(err.Error(), "delegated role acme metadata: bad signature") {
		t.Fatalf("Target with a badly signed delegation = %v", err)
	}
}

// TestRefreshSurvivesCorruptCache: cached metadata that a crash left empty
// is dropped and fetched again, where go-tuf alone would fail for good.
func TestRefreshSurvivesCorruptCache(t *testing.T) {
	ctx := context.Background()
	repo := newTestRepo(t)
	dir := t.TempDir()
	c := repo.client(dir, nil)
	repo.mustRefresh(c)
	for _, name := range []string{"timestamp.json", "snapshot.json", "targets.json"} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "tuf_tmp123"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := c.Refresh(ctx); err != nil {
		t.Fatalf("Refresh over a corrupt cache: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "tuf_tmp123")); !os.IsNotExist(err) {
		t.Errorf("go-tuf temporary file not cleaned: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "timestamp.json")); err != nil || fi.Size() == 0 {
		t.Errorf("timestamp.json not stored again: %v", err)
	}
}

func TestNewValidates(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no dir", Config{MetadataURL: "http://x/"}, "MetadataDir is empty"},
		{"bad metadata URL", Config{MetadataDir: "d", MetadataURL: "ftp://x/"}, `MetadataURL "ftp://x/"`},
		{"bad targets URL", Config{MetadataDir: "d", TargetsURL: "x"}, `TargetsURL "x"`},
		{"bad pin", Config{MetadataDir: "d", RootSHA256: "abc"}, `RootSHA256 "abc"`},
		{"only a dir (tuf-client init)", Config{MetadataDir: "d"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New = %v, want a config error naming %q", err, tt.want)
			}
		})
	}
}

func TestLocalName(t *testing.T) {
	long := strings.Repeat("a/", 150)
	tests := []struct {
		in, want string
	}{
		{"acme/acme-1.0.tar.gz", "acme%2Facme-1.0.tar.gz"},
		{"plain.txt", "plain.txt"},
		{"..", "%2E."},
		{".hidden", "%2Ehidden"},
		{"a b%c", "a%20b%25c"},
		{"../../etc/passwd", "%2E.%2F..%2Fetc%2Fpasswd"},
		{"", "%"},
	}
	for _, tt := range tests {
		if got := LocalName(tt.in); got != tt.want {
			t.Errorf("LocalName(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	n1, n2 := LocalName(long), LocalName(long+"b")
	if len(n1) > 200 || n1 == n2 || strings.ContainsAny(n1, "/") {
		t.Errorf("long names %q and %q: want distinct names of at most 200 bytes", n1, n2)
	}
}

// FuzzLocalName: names are safe file names, and different paths never
// share one. Seeded from TestLocalName.
func FuzzLocalName(f *testing.F) {
	for _, s := range []string{"acme/acme-1.0.tar.gz", "..", ".hidden", "a b%c", "../../etc/passwd", "", strings.Repeat("a/", 150)} {
		f.Add(s, s+"x")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		na, nb := LocalName(a), LocalName(b)
		if a != b && na == nb {
			t.Fatalf("LocalName(%q) == LocalName(%q) == %q", a, b, na)
		}
		if a == b && na != nb {
			t.Fatalf("LocalName is not stable")
		}
		if na == "" || na == "." || na == ".." || strings.HasPrefix(na, ".") || strings.ContainsAny(na, "/\\\x00") || len(na) > 200 {
			t.Fatalf("LocalName(%q) = %q is not a safe file name", a, na)
		}
	})
}
