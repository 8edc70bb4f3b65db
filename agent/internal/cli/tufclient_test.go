package cli

// Tests of `updateagent tuf-client`, run as a real subprocess (the binary
// is built once, in TestMain) against a repository the test controls
// (tufrepo_test.go), served on 127.0.0.1. Each attack runs against a
// client that trusts a good state and checks that the command exits 1
// with one line on stderr naming the role or target and the reason, that
// nothing lands in the target dir and that the trusted metadata stays as
// it was.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/dropless/dropless/agent/internal/fetch"
	"github.com/dropless/dropless/agent/internal/tuftest"
)

// updateagentBin is the binary TestMain built.
var updateagentBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "updateagent-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin := filepath.Join(dir, "updateagent")
	if runtime.GOOS == "windows" {
		bin += ".exe"
	}
	out, err := exec.Command("go", "build", "-o", bin, "github.com/dropless/dropless/agent/cmd/updateagent").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build updateagent: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	updateagentBin = bin
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	code           int
	stdout, stderr string
}

// runAgent runs the updateagent binary with args, FAKETIME unset unless
// env sets it.
func runAgent(t *testing.T, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, updateagentBin, args...)
	cmd.Env = append(cleanEnv(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run updateagent: %v", err)
	}
	t.Logf("%s updateagent %s\n-> exit %d\nstdout: %sstderr: %s", strings.Join(env, " "), strings.Join(args, " "), r.code, r.stdout, r.stderr)
	return r
}

func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "FAKETIME") {
			env = append(env, kv)
		}
	}
	return env
}

// tufClient is one client of a testRepo: its metadata dir, its target dir
// and the environment its commands get.
type tufClient struct {
	t    *testing.T
	repo *testRepo
	dir  string // --metadata-dir
	tdir string // --target-dir
	env  []string
}

// newTUFClient runs init with the repository's initial root, in the
// conformance suite's form.
func newTUFClient(t *testing.T, repo *testRepo) *tufClient {
	t.Helper()
	c := &tufClient{t: t, repo: repo, dir: filepath.Join(t.TempDir(), "metadata"), tdir: t.TempDir()}
	rootFile := filepath.Join(t.TempDir(), "initial_root.json")
	if err := os.WriteFile(rootFile, repo.RootV1(), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := runAgent(t, nil, "tuf-client", "--metadata-dir", c.dir, "init", rootFile); r.code != 0 {
		t.Fatalf("init: exit %d: %s", r.code, r.stderr)
	}
	return c
}

// refresh runs refresh with the flags in the conformance suite's order.
func (c *tufClient) refresh() result {
	c.t.Helper()
	return runAgent(c.t, c.env, "tuf-client", "--metadata-url", c.repo.MetadataURL(), "--metadata-dir", c.dir, "refresh")
}

func (c *tufClient) mustRefresh() {
	c.t.Helper()
	if r := c.refresh(); r.code != 0 {
		c.t.Fatalf("refresh: exit %d: %s", r.code, r.stderr)
	}
}

// download runs download with the flags in the conformance suite's order.
func (c *tufClient) download(names ...string) result {
	c.t.Helper()
	args := []string{"tuf-client", "--metadata-url", c.repo.MetadataURL(), "--metadata-dir", c.dir}
	for _, n := range names {
		args = append(args, "--target-name", n)
	}
	args = append(args, "--target-dir", c.tdir, "--target-base-url", c.repo.TargetsURL(), "download")
	return runAgent(c.t, c.env, args...)
}

// stored returns the content of target path in the target dir, or nil.
func (c *tufClient) stored(path string) []byte {
	b, err := os.ReadFile(filepath.Join(c.tdir, fetch.LocalName(path)))
	if err != nil {
		return nil
	}
	return b
}

// assertOneLine checks that stderr is one line, "updateagent: ...",
// containing each of want.
func assertOneLine(t *testing.T, stderr string, want ...string) {
	t.Helper()
	if !strings.HasPrefix(stderr, "updateagent: ") || strings.Count(stderr, "\n") != 1 || !strings.HasSuffix(stderr, "\n") {
		t.Errorf("stderr is not one line starting with \"updateagent: \": %q", stderr)
	}
	for _, w := range want {
		if !strings.Contains(stderr, w) {
			t.Errorf("stderr %q does not contain %q", stderr, w)
		}
	}
}

const appPath = "acme/app-1.0.tar.gz"

var appData = bytes.Repeat([]byte("acme app 1.0\n"), 8000) // 104 kB

// TestTUFClientAttacks plays the attacks of the TUF spec (go-tuf's
// simulator tests, the conformance suite) against a client that trusts a
// good state: each download exits 1 with one line naming the role or the
// target and the reason, stores nothing in the target dir and leaves the
// trusted metadata as it was. The only files allowed to move are those of
// roles verified before the refused one, which the TUF client workflow
// persists as soon as they verify (5.4.5, 5.5.7; the conformance suite
// checks for it): `moved` lists them, and they must then hold exactly
// what the repository legitimately serves.
func TestTUFClientAttacks(t *testing.T) {
	tests := []struct {
		name   string
		attack func(t *testing.T, repo *testRepo, c *tufClient)
		target string // to download; appPath if ""
		// wantMsg and [wantReason] must be in the stderr line.
		wantMsg    string
		wantReason fetch.Kind
		moved      []string
		check      func(t *testing.T, repo *testRepo) // more checks
	}{
		{
			name: "target listed by targets metadata not signed by the targets key",
			attack: func(t *testing.T, repo *testRepo, c *tufClient) {
				repo.Keys[metadata.TARGETS] = []*tuftest.Key{tuftest.NewKey(t)}
				repo.AddTarget(metadata.TARGETS, "acme/evil.tar.gz", []byte("evil"), nil)
				repo.Publish() // snapshot and timestamp properly signed
			},
			target:     "acme/evil.tar.gz",
			wantMsg:    "updateagent: download acme/evil.tar.gz: targets metadata: bad signature (0 valid of the 1 required)",
			wantReason: fetch.ErrBadSignature,
			moved:      []string{"timestamp.json", "snapshot.json"},
		},
		{
			name: "target served but listed by no signed metadata",
			attack: func(t *testing.T, repo *testRepo, c *tufClient) {
				repo.SetBlob("acme/evil.tar.gz", []byte("evil"), []byte("evil"))
			},
			target:     "acme/evil.tar.gz",
			wantMsg:    "updateagent: download acme/evil.tar.gz: no trusted targets metadata lists it",
			wantReason: fetch.ErrNotFound,
		},
		{
			name: "target altered",
			attack: func(t *testing.T, repo *testRepo, c *tufClient) {
				evil := bytes.Clone(appData)
				evil[len(evil)/2] ^= 0xff
				repo.SetBlob(appPath, appData, evil)
			},
			wantMsg:    "updateagent: download acme/app-1.0.tar.gz: sha256 mismatch (got ",
			wantReason: fetch.ErrHashMismatch,
		},
		{
			name: "target longer than its metadata says, served endlessly",
			attack: func(t *testing.T, repo *testRepo, c *tufClient) {
				repo.SetHook(func(w http.ResponseWriter, r *http.Request, data []byte) bool {
					chunk := bytes.Repeat([]byte("A"), 32<<10)
					for { // no Content-Length: chunked, for ever
						n, err := w.Write(chunk)
						repo.sent.Add(int64(n))
						if err != nil {
							return true
						}
					}
				})
			},
			wantMsg:    fmt.Sprintf("updateagent: download acme/app-1.0.tar.gz: server sent more than the trusted length %d", len(appData)),
			wantReason: fetch.ErrLengthExceeded,
			check: func(t *testing.T, repo *testRepo) {
				// The client read one byte past the length and hung up; the
				// server could write little more than the socket buffers.
				if n := repo.sent.Load(); n > 64<<20 {
					t.Errorf("the server wrote %d bytes before the client hung up", n)
				}
			},
		},
		{
			name: "timestamp signed by a key the root does not trust",
			attack: func(t *testing.T, repo *testRepo, c *tufClient) {
				repo.Keys[metadata.TIMESTAMP] = []*tuftest.Key{tuftest.NewKey(t)}
				repo.Publish()
			},
			wantMsg:    "updateagent: download acme/app-1.0.tar.gz: timestamp: bad signature (0 valid of the 1 required)",
			wantReason: fetch.ErrBadSignature,
		},
		{
			name: "timestamp rolled back",
			attack: func(t *testing.T, repo *testRepo, c *tufClient) {
				old := repo.Meta("timestamp.json") // version 2
				repo.Publish()
				c.mustRefresh() // trusts timestamp 3
				repo.SetMeta("timestamp.json", old)
			},
			wantMsg:    "timestamp: version 2 is lower than the trusted 3 (rollback attack?)",
			wantReason: fetch.ErrRollback,
		},
		{
			name: "snapshot rolled back",
			attack: func(t *testing.T, repo *testRepo, c *tufClient) {
				repo.PublishTimestamp(1) // a new timestamp over snapshot 1
			},
			wantMsg:    "snapshot: version 1 (listed by the new timestamp) is lower than the trusted 2 (rollback attack?)",
			wantReason: fetch.ErrRollback,
		},
		{
			name: "targets rolled back",
			attack: func(t *testing.T, repo *testRepo, c *tufClient) {
				// A new snapshot over targets version 1.
				repo.Snapshot.Signed.Meta["targets.json"] = metadata.MetaFile(1)
				repo.PublishSnapshot()
			},
			wantMsg:    "targets metadata: version 1 (listed by the new snapshot) is lower than the trusted 2 (rollback attack?)",
			wantReason: fetch.ErrRollback,
			moved:      []string{"timestamp.json"},
		},
		{
			name: "freeze: the timestamp is no longer renewed (FAKETIME=+2d)",
			attack: func(t *testing.T, repo *testRepo, c *tufClient) {
				c.env = []string{"FAKETIME=+2d"} // the timestamp lasts 24h
			},
			wantMsg:    "timestamp: expired at ",
			wantReason: fetch.ErrExpired,
		},
		{
			name: "mix and match: the targets version served is not the one the snapshot lists",
			attack: func(t *testing.T, repo *testRepo, c *tufClient) {
				repo.Publish() // targets, snapshot and timestamp 3
				repo.SetMeta("3.targets.json", repo.Meta("2.targets.json"))
			},
			wantMsg:    "targets metadata: version 2 is not the version 3 the snapshot lists",
			wantReason: fetch.ErrBadVersion,
			moved:      []string{"timestamp.json", "snapshot.json"},
		},
		{
			name: "mix and match: the snapshot served is not the one the timestamp lists",
			attack: func(t *testing.T, repo *testRepo, c *tufClient) {
				repo.Publish() // snapshot 3
				// Another snapshot 3: same version and length, other bytes.
				repo.Snapshot.Signed.Expires = repo.Snapshot.Signed.Expires.Add(time.Second)
				repo.SetMeta("3.snapshot.json", tuftest.Sign(t, repo.Snapshot, repo.Keys[metadata.SNAPSHOT]...))
			},
			wantMsg:    "snapshot: does not match the length and hashes the timestamp lists",
			wantReason: fetch.ErrHashMismatch,
			moved:      []string{"timestamp.json"},
		},
		{
			name: "root rotation signed by the new root key only",
			attack: func(t *testing.T, repo *testRepo, c *tufClient) {
				repo.ReplaceRootKey(metadata.ROOT, false, true)
			},
			wantMsg:    "root: bad signature (0 valid of the 1 required)",
			wantReason: fetch.ErrBadSignature,
		},
		{
			name: "root rotation signed by the old root key only",
			attack: func(t *testing.T, repo *testRepo, c *tufClient) {
				repo.ReplaceRootKey(metadata.ROOT, true, false)
			},
			wantMsg:    "root: bad signature (0 valid of the 1 required)",
			wantReason: fetch.ErrBadSignature,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repo := newTestRepo(t, map[string][]byte{appPath: appData})
			c := newTUFClient(t, repo)
			c.mustRefresh()
			tt.attack(t, repo, c)
			before := tuftest.DirFiles(t, c.dir)
			target := tt.target
			if target == "" {
				target = appPath
			}

			r := c.download(target)
			if r.code != 1 {
				t.Fatalf("download: exit %d, want 1", r.code)
			}
			assertOneLine(t, r.stderr, tt.wantMsg, "["+string(tt.wantReason)+"]")
			if entries, _ := os.ReadDir(c.tdir); len(entries) != 0 {
				t.Errorf("target dir holds %v after a refusal, want nothing", entries)
			}
			after := tuftest.DirFiles(t, c.dir)
			for name, b := range before {
				if after[name] == b {
					continue
				}
				if !slices.Contains(tt.moved, name) {
					t.Errorf("trusted %s changed by a refused download", name)
					continue
				}
				if want := string(servedMeta(repo, name)); after[name] != want {
					t.Errorf("trusted %s changed, but not to what the repository serves", name)
				}
			}
			for name := range after {
				if _, ok := before[name]; !ok {
					t.Errorf("%s appeared in the metadata dir", name)
				}
			}
			if tt.check != nil {
				tt.check(t, repo)
			}
		})
	}
}

// servedMeta is what repo serves now for an unversioned metadata name.
func servedMeta(repo *testRepo, name string) []byte {
	switch name {
	case "timestamp.json":
		return repo.Meta(name)
	case "snapshot.json":
		return repo.Meta(fmt.Sprintf("%d.snapshot.json", repo.Snapshot.Signed.Version))
	case "targets.json":
		return repo.Meta(fmt.Sprintf("%d.targets.json", repo.Targets.Signed.Version))
	case "root.json":
		return repo.Meta(fmt.Sprintf("%d.root.json", repo.Root.Signed.Version))
	}
	return nil
}

// TestTUFClientRootRotation: the client follows 2.root.json (signed by the
// old and the new root keys) and 3.root.json (a new timestamp key, signed
// by the new root key), then trusts timestamps from the new key.
func TestTUFClientRootRotation(t *testing.T) {
	repo := newTestRepo(t, map[string][]byte{appPath: appData})
	c := newTUFClient(t, repo)
	c.mustRefresh()
	repo.ReplaceRootKey(metadata.ROOT, true, true)
	_, root3 := repo.ReplaceRootKey(metadata.TIMESTAMP, false, false)
	repo.Publish()

	r := c.download(appPath)
	if r.code != 0 {
		t.Fatalf("download across the rotation: exit %d: %s", r.code, r.stderr)
	}
	if got, _ := os.ReadFile(filepath.Join(c.dir, "root.json")); !bytes.Equal(got, root3) {
		t.Errorf("trusted root.json is not 3.root.json")
	}
	if got, _ := os.ReadFile(filepath.Join(c.dir, "timestamp.json")); !bytes.Equal(got, repo.Meta("timestamp.json")) {
		t.Errorf("trusted timestamp.json is not the one signed by the new key")
	}
	if !bytes.Equal(c.stored(appPath), appData) {
		t.Errorf("target not stored")
	}
}

// TestTUFClientDelegation: a target listed by a delegated role whose path
// pattern covers it downloads, and the role's metadata is kept as
// <role>.json; one the role lists outside its pattern is not trusted.
func TestTUFClientDelegation(t *testing.T) {
	repo := newTestRepo(t, nil)
	repo.Delegate("acme", "acme/*")
	data := []byte("delegated bundle 2.0")
	repo.AddTarget("acme", "acme/app-2.0.tar.gz", data, nil)
	repo.AddTarget("acme", "other/app.tar.gz", []byte("outside the pattern"), nil)
	repo.Publish()
	c := newTUFClient(t, repo)

	r := c.download("acme/app-2.0.tar.gz")
	if r.code != 0 {
		t.Fatalf("download: exit %d: %s", r.code, r.stderr)
	}
	if !bytes.Equal(c.stored("acme/app-2.0.tar.gz"), data) {
		t.Errorf("target not stored")
	}
	got, err := os.ReadFile(filepath.Join(c.dir, "acme.json"))
	if err != nil || !bytes.Equal(got, repo.Meta(fmt.Sprintf("%d.acme.json", repo.Delegated["acme"].Signed.Version))) {
		t.Errorf("delegated role metadata not stored as acme.json: %v", err)
	}

	r = c.download("other/app.tar.gz")
	if r.code != 1 {
		t.Fatalf("download outside the delegation's paths: exit %d, want 1", r.code)
	}
	assertOneLine(t, r.stderr, "download other/app.tar.gz: no trusted targets metadata lists it [not_found]")
	if c.stored("other/app.tar.gz") != nil {
		t.Errorf("target outside the delegation's paths stored")
	}
}

// TestTUFClientQuotedTargetName: a target path with a space, '+' and '%'
// is requested quoted and stored under its escaped name.
func TestTUFClientQuotedTargetName(t *testing.T) {
	const name = "dir/a b+c%.tar.gz"
	data := []byte("quoted")
	repo := newTestRepo(t, map[string][]byte{name: data})
	c := newTUFClient(t, repo)
	r := c.download(name)
	if r.code != 0 {
		t.Fatalf("download: exit %d: %s", r.code, r.stderr)
	}
	if !bytes.Equal(c.stored(name), data) {
		t.Fatalf("target not stored as %s", fetch.LocalName(name))
	}
	reqs := repo.Paths("/targets/")
	if len(reqs) != 1 || !strings.HasSuffix(reqs[0], ".a b+c%.tar.gz") || !strings.HasPrefix(reqs[0], "/targets/dir/") {
		t.Errorf("target requests %q", reqs)
	}
}

// TestTUFClientNoSecondDownload: a target already in the target dir with
// matching hashes is not requested again; a file there that does not
// match is replaced by the verified target.
func TestTUFClientNoSecondDownload(t *testing.T) {
	repo := newTestRepo(t, map[string][]byte{appPath: appData})
	c := newTUFClient(t, repo)
	if r := c.download(appPath); r.code != 0 {
		t.Fatalf("first download: exit %d: %s", r.code, r.stderr)
	}
	if n := len(repo.Paths("/targets/")); n != 1 {
		t.Fatalf("first download made %d target requests, want 1", n)
	}
	r := c.download(appPath)
	if r.code != 0 {
		t.Fatalf("second download: exit %d: %s", r.code, r.stderr)
	}
	if n := len(repo.Paths("/targets/")); n != 1 {
		t.Errorf("second download made %d target requests, want none", n-1)
	}
	if !strings.Contains(r.stdout, "not downloaded again") {
		t.Errorf("stdout %q does not say the target was kept", r.stdout)
	}
	if entries, _ := os.ReadDir(c.tdir); len(entries) != 1 || entries[0].Name() != fetch.LocalName(appPath) {
		t.Errorf("target dir holds %v, want the target alone", entries)
	}

	// Another file under the target's name is not the target.
	dst := filepath.Join(c.tdir, fetch.LocalName(appPath))
	if err := os.WriteFile(dst, []byte("stale"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := c.download(appPath); r.code != 0 {
		t.Fatalf("download over a stale file: exit %d: %s", r.code, r.stderr)
	}
	if !bytes.Equal(c.stored(appPath), appData) {
		t.Errorf("stale file not replaced by the target")
	}
}

// TestTUFClientSeveralTargets: targets are handled in order, and the first
// failure stops the command: the ones before it are stored, the ones after
// it not even requested.
func TestTUFClientSeveralTargets(t *testing.T) {
	repo := newTestRepo(t, map[string][]byte{"a.tar.gz": []byte("a"), "b.tar.gz": []byte("b"), "c.tar.gz": []byte("c")})
	repo.SetBlob("b.tar.gz", []byte("b"), []byte("B")) // altered
	c := newTUFClient(t, repo)
	r := c.download("a.tar.gz", "b.tar.gz", "c.tar.gz")
	if r.code != 1 {
		t.Fatalf("download: exit %d, want 1", r.code)
	}
	assertOneLine(t, r.stderr, "download b.tar.gz: sha256 mismatch", "[hash_mismatch]")
	if string(c.stored("a.tar.gz")) != "a" || c.stored("b.tar.gz") != nil || c.stored("c.tar.gz") != nil {
		t.Errorf("target dir holds %v, want a.tar.gz only", tuftest.DirFiles(t, c.tdir))
	}
	for _, p := range repo.Paths("/targets/") {
		if strings.HasSuffix(p, "c.tar.gz") {
			t.Errorf("c.tar.gz requested after b.tar.gz failed")
		}
	}
}

// TestTUFClientInterrupted: SIGINT during a download exits 1 and leaves
// nothing in the target dir.
func TestTUFClientInterrupted(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no SIGINT to a child process on Windows")
	}
	repo := newTestRepo(t, map[string][]byte{appPath: appData})
	c := newTUFClient(t, repo)
	started := make(chan struct{}, 1)
	repo.SetHook(func(w http.ResponseWriter, r *http.Request, data []byte) bool {
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		w.Write(data[:len(data)/2])
		w.(http.Flusher).Flush()
		started <- struct{}{}
		<-r.Context().Done() // the rest never comes
		return true
	})
	cmd := exec.Command(updateagentBin, "tuf-client", "--metadata-dir", c.dir, "--metadata-url", repo.MetadataURL(),
		"--target-name", appPath, "--target-base-url", repo.TargetsURL(), "--target-dir", c.tdir, "download")
	cmd.Env = cleanEnv()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case <-time.After(time.Minute):
		cmd.Process.Kill()
		t.Fatal("the download did not start")
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	t.Logf("stderr: %s", stderr.String())
	if ee, ok := errors.AsType[*exec.ExitError](err); !ok || ee.ExitCode() != 1 {
		t.Fatalf("interrupted download: %v, want exit 1", err)
	}
	assertOneLine(t, stderr.String(), "[canceled]")
	if entries, _ := os.ReadDir(c.tdir); len(entries) != 0 {
		t.Errorf("target dir holds %v after an interrupted download, want nothing", entries)
	}
}

// TestTUFClientInit: init stores the root without a request, in the
// conformance form (flag before the verb); a file that is not root
// metadata is refused with exit 1 and nothing stored.
func TestTUFClientInit(t *testing.T) {
	repo := newTestRepo(t, nil)
	c := newTUFClient(t, repo)
	if got, _ := os.ReadFile(filepath.Join(c.dir, "root.json")); !bytes.Equal(got, repo.RootV1()) {
		t.Errorf("root.json is not the root given")
	}
	if n := len(repo.Paths("/")); n != 0 {
		t.Errorf("init made %d requests", n)
	}

	tmp := t.TempDir()
	notRoot := filepath.Join(tmp, "timestamp.json")
	garbage := filepath.Join(tmp, "garbage.json")
	os.WriteFile(notRoot, repo.Meta("timestamp.json"), 0o644)
	os.WriteFile(garbage, []byte("not json"), 0o644)
	tests := []struct {
		name, file, want string
	}{
		{"not JSON", garbage, "is not root metadata"},
		{"timestamp metadata", notRoot, "is not root metadata"},
		{"missing file", filepath.Join(tmp, "missing.json"), "read the root file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "metadata")
			r := runAgent(t, nil, "tuf-client", "--metadata-dir", dir, "init", tt.file)
			if r.code != 1 {
				t.Fatalf("init: exit %d, want 1", r.code)
			}
			assertOneLine(t, r.stderr, "updateagent: init: ", tt.want)
			if _, err := os.Stat(filepath.Join(dir, "root.json")); err == nil {
				t.Errorf("root.json stored")
			}
		})
	}
}

// TestTUFClientUsage: usage errors exit 2 with one line; --help exits 0.
func TestTUFClientUsage(t *testing.T) {
	dir := t.TempDir()
	url := "http://127.0.0.1:1/metadata"
	tests := []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"no verb", nil, []string{"tuf-client", "--metadata-dir", dir}, "tuf-client needs a verb"},
		{"unknown verb", nil, []string{"tuf-client", "--metadata-dir", dir, "fetch"}, `unknown command "fetch"`},
		{"unknown flag", nil, []string{"tuf-client", "--metadata-dir", dir, "--metadata", url, "refresh"}, "unknown flag: --metadata"},
		{"init without --metadata-dir", nil, []string{"tuf-client", "init", "root.json"}, "tuf-client init needs --metadata-dir"},
		{"refresh without --metadata-dir", nil, []string{"tuf-client", "--metadata-url", url, "refresh"}, "tuf-client refresh needs --metadata-dir"},
		{"download without --metadata-dir", nil, []string{"tuf-client", "--metadata-url", url, "--target-name", "a", "--target-base-url", url, "--target-dir", dir, "download"}, "needs --metadata-dir"},
		{"refresh without --metadata-url", nil, []string{"tuf-client", "--metadata-dir", dir, "refresh"}, "needs --metadata-url"},
		{"download without --target-dir", nil, []string{"tuf-client", "--metadata-dir", dir, "--metadata-url", url, "--target-name", "a", "--target-base-url", url, "download"}, "needs --target-dir"},
		{"download without --target-name", nil, []string{"tuf-client", "--metadata-dir", dir, "--metadata-url", url, "--target-base-url", url, "--target-dir", dir, "download"}, "needs --target-name"},
		{"refresh with a target", nil, []string{"tuf-client", "--metadata-dir", dir, "--metadata-url", url, "--target-name", "a", "refresh"}, "does not take --target-name"},
		{"init without a file", nil, []string{"tuf-client", "--metadata-dir", dir, "init"}, "takes one argument"},
		{"init with two files", nil, []string{"tuf-client", "--metadata-dir", dir, "init", "a", "b"}, "takes one argument"},
		{"empty --metadata-dir", nil, []string{"tuf-client", "--metadata-dir", "", "--metadata-url", url, "refresh"}, "--metadata-dir is empty"},
		{"not an http URL", nil, []string{"tuf-client", "--metadata-dir", dir, "--metadata-url", "ftp://x/", "refresh"}, `--metadata-url "ftp://x/" is not an http://`},
		{"unreadable FAKETIME", []string{"FAKETIME=next week"}, []string{"tuf-client", "--metadata-dir", dir, "--metadata-url", url, "refresh"}, `FAKETIME="next week" is not a libfaketime time`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runAgent(t, tt.env, tt.args...)
			if r.code != 2 {
				t.Fatalf("exit %d, want 2", r.code)
			}
			assertOneLine(t, r.stderr, tt.want, "(see --help)")
		})
	}
	for _, args := range [][]string{{"tuf-client", "--help"}, {"tuf-client", "download", "--help"}} {
		if r := runAgent(t, nil, args...); r.code != 0 || !strings.Contains(r.stdout, "--target-base-url") {
			t.Errorf("%v: exit %d, stdout %q", args, r.code, r.stdout)
		}
	}
}

// TestTUFClientFAKETIME: FAKETIME sets the reference time of refresh, in
// libfaketime's relative and absolute forms.
func TestTUFClientFAKETIME(t *testing.T) {
	repo := newTestRepo(t, map[string][]byte{appPath: appData})
	c := newTUFClient(t, repo)
	c.mustRefresh()
	soon := time.Now().Add(time.Hour).UTC().Format("2006-01-02 15:04:05")
	late := time.Now().Add(72 * time.Hour).UTC().Format("2006-01-02 15:04:05")
	tests := []struct {
		faketime string
		wantCode int
	}{
		{"+1h", 0},
		{"-2h", 0},
		{"+691200", 1}, // 8 days: the timestamp lasts one
		{"+8d", 1},
		{"@" + soon, 0},
		{soon, 0},
		{"@" + late, 1},
		{late, 1},
		{"+1y", 1},
	}
	for _, tt := range tests {
		c.env = []string{"FAKETIME=" + tt.faketime, "TZ=UTC"}
		r := c.refresh()
		if r.code != tt.wantCode {
			t.Errorf("FAKETIME=%q: exit %d, want %d", tt.faketime, r.code, tt.wantCode)
		}
		if tt.wantCode == 1 {
			assertOneLine(t, r.stderr, "expired at", "[expired]")
		}
	}
}

// TestTUFClientFAKETIMEZone: an absolute FAKETIME is read in the zone TZ
// names, as libfaketime's mktime reads it.
func TestTUFClientFAKETIMEZone(t *testing.T) {
	if _, err := time.LoadLocation("America/Los_Angeles"); err != nil {
		t.Skipf("no time zone database: %v", err)
	}
	repo := newTestRepo(t, nil)
	c := newTUFClient(t, repo)
	c.mustRefresh()
	// 20 hours from now in UTC; in Los Angeles (UTC-8 or -7) the same
	// wall time is 27 or 28 hours from now, past the timestamp's 24.
	wall := time.Now().Add(20 * time.Hour).UTC().Format("2006-01-02 15:04:05")
	for _, tt := range []struct {
		tz       string
		wantCode int
	}{{"UTC", 0}, {"", 0}, {"America/Los_Angeles", 1}} {
		c.env = []string{"FAKETIME=" + wall, "TZ=" + tt.tz}
		if r := c.refresh(); r.code != tt.wantCode {
			t.Errorf("FAKETIME=%q TZ=%q: exit %d, want %d", wall, tt.tz, r.code, tt.wantCode)
		}
	}
}

// TestSharedDownloader: tuf-client and an upgrade share the downloader.
// The same altered target is refused by tuf-client and by a fetch.Client
// used as the upgrade's tufFetcher (agent/internal/runner) uses it
// (Bootstrap, Refresh, Target, Download), with the same reason and the
// same message.
func TestSharedDownloader(t *testing.T) {
	repo := newTestRepo(t, map[string][]byte{appPath: appData})
	evil := bytes.Clone(appData)
	evil[7] ^= 0xff
	repo.SetBlob(appPath, appData, evil)

	c := newTUFClient(t, repo)
	r := c.download(appPath)
	if r.code != 1 {
		t.Fatalf("tuf-client download: exit %d, want 1", r.code)
	}

	ctx := context.Background()
	fc, err := fetch.New(fetch.Config{
		MetadataURL: repo.MetadataURL(),
		TargetsURL:  repo.TargetsURL(),
		MetadataDir: t.TempDir(),
		RootSHA256:  fmt.Sprintf("%x", sha256.Sum256(repo.RootV1())),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := fc.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	if err := fc.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	tg, err := fc.Target(ctx, appPath)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "bundle.tar.gz")
	_, err = fc.Download(ctx, tg, dst)
	e, ok := errors.AsType[*fetch.Error](err)
	if !ok || fetch.Reason(err) != string(fetch.ErrHashMismatch) {
		t.Fatalf("fetch.Client Download = %v, want %s", err, fetch.ErrHashMismatch)
	}
	if _, err := os.Stat(dst); err == nil {
		t.Errorf("the upgrade's download kept the altered target")
	}
	assertOneLine(t, r.stderr, "["+fetch.Reason(err)+"]", e.Msg)
}
