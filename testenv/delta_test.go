//go:build e2e && unix

package testenv

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/dropless/dropless/pkg/protocol"
)

// countingMirror proxies the server's TUF repository, counting the bytes
// of every target it serves by file name, and lets alter change them.
type countingMirror struct {
	URL   string
	mu    sync.Mutex
	bytes map[string]int64 // target file base name (without the hash prefix) -> bytes served
	alter func(name string, b []byte) []byte
}

func newCountingMirror(t *testing.T, env *Env) *countingMirror {
	m := &countingMirror{bytes: map[string]int64{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp, err := http.Get(env.URL + r.URL.Path)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		name := filepath.Base(r.URL.Path)
		if _, after, ok := strings.Cut(name, "."); ok && strings.HasPrefix(r.URL.Path, "/tuf/targets/") {
			name = after
		}
		m.mu.Lock()
		if resp.StatusCode == 200 && m.alter != nil {
			b = m.alter(name, b)
		}
		m.bytes[name] += int64(len(b))
		m.mu.Unlock()
		w.WriteHeader(resp.StatusCode)
		w.Write(b)
	}))
	t.Cleanup(srv.Close)
	m.URL = srv.URL
	return m
}

func (m *countingMirror) served(name string) int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.bytes[name]
}

// sameTree fails unless the two directories hold the same files with the
// same contents.
func sameTree(t *testing.T, want, got string) {
	t.Helper()
	read := func(root string) map[string][]byte {
		m := map[string][]byte{}
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				rel, _ := filepath.Rel(root, p)
				m[rel], _ = os.ReadFile(p)
			}
			return nil
		})
		return m
	}
	w, g := read(want), read(got)
	if len(w) == 0 || len(w) != len(g) {
		t.Fatalf("%s holds %d files, %s %d", want, len(w), got, len(g))
	}
	for name, b := range w {
		if !bytes.Equal(b, g[name]) {
			t.Fatalf("%s differs between %s and %s", name, want, got)
		}
	}
}

func releaseShow(t *testing.T, env *Env, version string) protocol.Release {
	var r protocol.Release
	if err := json.Unmarshal([]byte(env.MustCLI(t, "release", "show", "--product", Product, "--version", version, "--json")), &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestPatchReleaseAsDelta: a patch release reaches the agent as a delta
// from the bundle it kept; the mirror serves the delta, not the full
// bundle, and what is installed is what the full bundle holds.
func TestPatchReleaseAsDelta(t *testing.T) {
	t.Parallel()
	env := New(t)
	env.Publish(t, "1.0.0", Healthy)
	env.Publish(t, "1.0.1", Healthy)
	rel := releaseShow(t, env, "1.0.1")
	if len(rel.Deltas) != 1 || rel.Deltas[0].From != "1.0.0" || rel.Deltas[0].Target != protocol.DeltaTargetPath(Product, "1.0.1", "1.0.0") {
		t.Fatalf("release show 1.0.1: deltas %+v, want one from 1.0.0", rel.Deltas)
	}
	mirror := newCountingMirror(t, env)
	site := env.NewSite(t, "acme-prod", "acme", `targets_url = "`+mirror.URL+`/tuf/targets/"`)
	site.Upgrade(t, "1.0.0")
	site.AwaitHealthy(t, "1.0.0")
	site.AwaitJob(t)

	site.Upgrade(t, "1.0.1")
	site.AwaitHealthy(t, "1.0.1")
	if j := site.AwaitJob(t); j.Result != protocol.ResultSucceeded {
		t.Fatalf("upgrade by delta: %+v", j)
	}
	full := filepath.Base(protocol.TargetPath(Product, "1.0.1"))
	deltaName := filepath.Base(rel.Deltas[0].Target)
	if n := mirror.served(full); n != 0 {
		t.Errorf("the mirror served %d bytes of the full bundle; want none", n)
	}
	wire := mirror.served(deltaName)
	if wire == 0 || wire*10 > rel.Length {
		t.Errorf("the delta took %d bytes on the wire for a %d-byte bundle: want more than 0 and at most 10 %%", wire, rel.Length)
	}
	t.Logf("patch release on the wire: %d bytes of delta for a %d-byte bundle (%.3f %%)", wire, rel.Length, 100*float64(wire)/float64(rel.Length))
	if b, _ := os.ReadFile(site.agent.Log); !bytes.Contains(b, []byte("bundle rebuilt from a delta")) {
		t.Errorf("the agent's log does not say it rebuilt the bundle from a delta")
	}
	sameTree(t, filepath.Join(env.Dir, "bundles", "1.0.1", "files"), filepath.Join(site.Install, "releases", "1.0.1"))
}

// TestDeltaFallsBackToFullDownload: a kept base that does not rebuild the
// signed bundle, a delta altered in transit, and no kept base at all each
// fall back to the full bundle, logged, and the release still installs.
func TestDeltaFallsBackToFullDownload(t *testing.T) {
	t.Parallel()
	env := New(t)
	for _, v := range []string{"1.0.0", "1.0.1", "1.0.2", "1.0.3"} {
		env.Publish(t, v, Healthy)
	}
	mirror := newCountingMirror(t, env)
	site := env.NewSite(t, "acme-prod", "acme", `targets_url = "`+mirror.URL+`/tuf/targets/"`)
	site.Upgrade(t, "1.0.0")
	site.AwaitHealthy(t, "1.0.0")
	site.AwaitJob(t)
	kept := filepath.Join(site.Data, "bundles", Product, "1.0.0")
	if _, err := os.Stat(kept); err != nil {
		t.Fatalf("the agent did not keep the bundle it installed: %v", err)
	}

	step := func(version, wantLog string) {
		t.Helper()
		before, _ := os.ReadFile(site.agent.Log)
		site.Upgrade(t, version)
		site.AwaitHealthy(t, version)
		if j := site.AwaitJob(t); j.Result != protocol.ResultSucceeded {
			t.Fatalf("upgrade to %s: %+v", version, j)
		}
		after, _ := os.ReadFile(site.agent.Log)
		logged := string(after[len(before):])
		if !strings.Contains(logged, "delta not used: downloading the full bundle") || !strings.Contains(logged, wantLog) {
			t.Fatalf("upgrade to %s: the agent's log does not show the fall back (%q):\n%s", version, wantLog, logged)
		}
		if n := mirror.served(filepath.Base(protocol.TargetPath(Product, version))); n == 0 {
			t.Fatalf("upgrade to %s: the full bundle was not downloaded", version)
		}
		sameTree(t, filepath.Join(env.Dir, "bundles", version, "files"), filepath.Join(site.Install, "releases", version))
	}

	// A kept base altered on disk (still a valid gzip): the rebuilt
	// bundle is not the signed one.
	zr, err := gzip.NewReader(bytes.NewReader(must(os.ReadFile(kept))))
	if err != nil {
		t.Fatal(err)
	}
	tarBytes := must(io.ReadAll(zr))
	tarBytes[len(tarBytes)/2] ^= 0xff
	var altered bytes.Buffer
	zw := gzip.NewWriter(&altered)
	zw.Write(tarBytes)
	zw.Close()
	os.WriteFile(kept, altered.Bytes(), 0o600)
	step("1.0.1", "the rebuilt bundle")

	// A delta altered in transit: the TUF client refuses it.
	mirror.mu.Lock()
	mirror.alter = func(name string, b []byte) []byte {
		if strings.Contains(name, ".delta-from-") {
			b = slices.Clone(b)
			b[len(b)/2] ^= 0xff
		}
		return b
	}
	mirror.mu.Unlock()
	step("1.0.2", "sha256")

	// No kept base.
	os.RemoveAll(filepath.Join(site.Data, "bundles"))
	step("1.0.3", "no earlier bundle")
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
