package cli

// A small TUF repository for the tuf-client tests, in the spirit of
// go-tuf's internal/testutils/simulator (and a copy of the one in
// agent/internal/fetch's tests, which another package cannot import):
// real ed25519 keys, metadata signed with go-tuf's metadata package,
// served on 127.0.0.1 with consistent snapshots and hash-prefixed targets,
// and a log of the requests it answered. Tests change it (publish, re-sign
// with other keys, serve old versions, rotate the root) to play attacks.

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

type testKey struct {
	signer signature.Signer
	key    *metadata.Key
	id     string
}

func newTestKey(t *testing.T) *testKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := signature.LoadSigner(priv, crypto.Hash(0))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := s.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	k, err := metadata.KeyFromPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	id, err := k.ID()
	if err != nil {
		t.Fatal(err)
	}
	return &testKey{signer: s, key: k, id: id}
}

type testRepo struct {
	t *testing.T

	// keys signs each role; root is signed by every key listed.
	keys      map[string][]*testKey
	root      *metadata.Metadata[metadata.RootType]
	targets   *metadata.Metadata[metadata.TargetsType]
	delegated map[string]*metadata.Metadata[metadata.TargetsType]
	snapshot  *metadata.Metadata[metadata.SnapshotType]
	timestamp *metadata.Metadata[metadata.TimestampType]
	// tsExpiry is how long a timestamp signed now lasts.
	tsExpiry time.Duration

	mu    sync.Mutex
	meta  map[string][]byte                                              // served under /metadata/: 1.root.json, timestamp.json, N.snapshot.json, ...
	blobs map[string][]byte                                              // served under /targets/, by hash-prefixed path
	reqs  []string                                                       // paths requested, decoded
	hook  func(w http.ResponseWriter, r *http.Request, data []byte) bool // may answer a target request itself
	sent  atomic.Int64                                                   // bytes a hook wrote, if it counts them

	srv *httptest.Server
}

// newTestRepo publishes version 1 of every role, one key per role and no
// targets, then version 2 of targets, snapshot and timestamp with the
// given targets (path -> content) listed by the top-level targets role.
func newTestRepo(t *testing.T, targets map[string][]byte) *testRepo {
	t.Helper()
	far := time.Now().Add(30 * 24 * time.Hour).UTC().Truncate(time.Second)
	r := &testRepo{
		t:         t,
		keys:      map[string][]*testKey{},
		root:      metadata.Root(far),
		targets:   metadata.Targets(far),
		delegated: map[string]*metadata.Metadata[metadata.TargetsType]{},
		snapshot:  metadata.Snapshot(far),
		timestamp: metadata.Timestamp(far),
		tsExpiry:  24 * time.Hour,
		meta:      map[string][]byte{},
		blobs:     map[string][]byte{},
	}
	for _, role := range metadata.TOP_LEVEL_ROLE_NAMES {
		k := newTestKey(t)
		r.keys[role] = []*testKey{k}
		if err := r.root.Signed.AddKey(k.key, role); err != nil {
			t.Fatal(err)
		}
	}
	r.root.Signed.ConsistentSnapshot = true
	r.publishRoot()
	r.targets.Signed.Version = 0
	r.snapshot.Signed.Version = 0
	r.timestamp.Signed.Version = 0
	r.publish()
	for p, data := range targets {
		r.addTarget(metadata.TARGETS, p, data)
	}
	r.publish()

	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *testRepo) metadataURL() string { return r.srv.URL + "/metadata" }
func (r *testRepo) targetsURL() string  { return r.srv.URL + "/targets" }

func sign[T metadata.Roles](t *testing.T, md *metadata.Metadata[T], keys ...*testKey) []byte {
	t.Helper()
	md.ClearSignatures()
	for _, k := range keys {
		if _, err := md.Sign(k.signer); err != nil {
			t.Fatal(err)
		}
	}
	b, err := md.ToBytes(true)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (r *testRepo) setMeta(name string, b []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.meta[name] = b
}

func (r *testRepo) getMeta(name string) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.meta[name]
}

// publishRoot signs the current root with every root key and serves it as
// N.root.json.
func (r *testRepo) publishRoot() []byte {
	b := sign(r.t, r.root, r.keys[metadata.ROOT]...)
	r.setMeta(fmt.Sprintf("%d.root.json", r.root.Signed.Version), b)
	return b
}

// rootV1 is the initial root, the one clients are given by init.
func (r *testRepo) rootV1() []byte { return r.getMeta("1.root.json") }

// publish bumps and signs targets (and delegated roles), snapshot and
// timestamp, as a release does.
func (r *testRepo) publish() {
	r.targets.Signed.Version++
	r.setMeta(fmt.Sprintf("%d.targets.json", r.targets.Signed.Version), sign(r.t, r.targets, r.keys[metadata.TARGETS]...))
	r.snapshot.Signed.Meta["targets.json"] = metadata.MetaFile(r.targets.Signed.Version)
	for name, md := range r.delegated {
		md.Signed.Version++
		r.setMeta(fmt.Sprintf("%d.%s.json", md.Signed.Version, name), sign(r.t, md, r.keys[name]...))
		r.snapshot.Signed.Meta[name+".json"] = metadata.MetaFile(md.Signed.Version)
	}
	r.publishSnapshot()
}

// publishSnapshot bumps and signs the snapshot, then the timestamp.
func (r *testRepo) publishSnapshot() {
	r.snapshot.Signed.Version++
	r.setMeta(fmt.Sprintf("%d.snapshot.json", r.snapshot.Signed.Version), sign(r.t, r.snapshot, r.keys[metadata.SNAPSHOT]...))
	r.publishTimestamp(r.snapshot.Signed.Version)
}

// publishTimestamp bumps and signs a timestamp over snapshot version
// snapV (which may be an old one) and serves it as timestamp.json.
func (r *testRepo) publishTimestamp(snapV int64) []byte {
	snap := r.getMeta(fmt.Sprintf("%d.snapshot.json", snapV))
	if snap == nil {
		r.t.Fatalf("no snapshot version %d", snapV)
	}
	sum := sha256.Sum256(snap)
	mf := metadata.MetaFile(snapV)
	mf.Length = int64(len(snap))
	mf.Hashes = metadata.Hashes{"sha256": sum[:]}
	r.timestamp.Signed.Meta["snapshot.json"] = mf
	r.timestamp.Signed.Version++
	r.timestamp.Signed.Expires = time.Now().Add(r.tsExpiry).UTC().Truncate(time.Second)
	b := sign(r.t, r.timestamp, r.keys[metadata.TIMESTAMP]...)
	r.setMeta("timestamp.json", b)
	return b
}

// addTarget lists data as path in role's targets metadata (with sha256 and
// sha512) and serves it; publish to sign.
func (r *testRepo) addTarget(role, path string, data []byte) {
	r.t.Helper()
	tf := metadata.TargetFile()
	tf.Length = int64(len(data))
	s256 := sha256.Sum256(data)
	s512 := sha512.Sum512(data)
	tf.Hashes = metadata.Hashes{"sha256": s256[:], "sha512": s512[:]}
	md := r.targets
	if role != metadata.TARGETS {
		md = r.delegated[role]
	}
	md.Signed.Targets[path] = tf
	r.setBlob(path, data, data)
}

// setBlob serves data at the hash-prefixed URL of content listed (which
// may differ from data: an altered target).
func (r *testRepo) setBlob(targetPath string, listed, data []byte) {
	dir, base := path.Split(targetPath)
	sum := sha256.Sum256(listed)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.blobs[dir+hex.EncodeToString(sum[:])+"."+base] = data
}

// delegate makes targets delegate paths to a new role with its own key.
func (r *testRepo) delegate(role string, paths ...string) {
	k := newTestKey(r.t)
	r.keys[role] = []*testKey{k}
	if r.targets.Signed.Delegations == nil {
		r.targets.Signed.Delegations = &metadata.Delegations{Keys: map[string]*metadata.Key{}}
	}
	r.targets.Signed.Delegations.Roles = append(r.targets.Signed.Delegations.Roles, metadata.DelegatedRole{
		Name: role, KeyIDs: []string{}, Threshold: 1, Paths: paths,
	})
	if err := r.targets.Signed.AddKey(k.key, role); err != nil {
		r.t.Fatal(err)
	}
	md := metadata.Targets(r.targets.Signed.Expires)
	md.Signed.Version = 0
	r.delegated[role] = md
}

// replaceRootKey gives role a new key in a new root version. For the root
// role the new root is signed by the old keys if signOld and by the new
// one if signNew (a valid rotation needs both); for another role by the
// current root keys. It returns the new root's bytes.
func (r *testRepo) replaceRootKey(role string, signOld, signNew bool) []byte {
	old := r.keys[role]
	k := newTestKey(r.t)
	for _, o := range old {
		if err := r.root.Signed.RevokeKey(o.id, role); err != nil {
			r.t.Fatal(err)
		}
	}
	if err := r.root.Signed.AddKey(k.key, role); err != nil {
		r.t.Fatal(err)
	}
	r.root.Signed.Version++
	var signers []*testKey
	if role == metadata.ROOT {
		if signOld {
			signers = append(signers, old...)
		}
		if signNew {
			signers = append(signers, k)
		}
	} else {
		signers = r.keys[metadata.ROOT]
	}
	r.keys[role] = []*testKey{k}
	b := sign(r.t, r.root, signers...)
	r.setMeta(fmt.Sprintf("%d.root.json", r.root.Signed.Version), b)
	return b
}

func (r *testRepo) serve(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	r.reqs = append(r.reqs, req.URL.Path)
	hook := r.hook
	var data []byte
	var ok bool
	switch {
	case strings.HasPrefix(req.URL.Path, "/metadata/"):
		data, ok = r.meta[strings.TrimPrefix(req.URL.Path, "/metadata/")]
		hook = nil
	case strings.HasPrefix(req.URL.Path, "/targets/"):
		data, ok = r.blobs[strings.TrimPrefix(req.URL.Path, "/targets/")]
	}
	r.mu.Unlock()
	if !ok {
		http.NotFound(w, req)
		return
	}
	if hook != nil && hook(w, req, data) {
		return
	}
	http.ServeContent(w, req, "", time.Time{}, bytes.NewReader(data))
}

// requests returns the paths requested so far under prefix.
func (r *testRepo) requests(prefix string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, p := range r.reqs {
		if strings.HasPrefix(p, prefix) {
			out = append(out, p)
		}
	}
	return out
}

func (r *testRepo) setHook(h func(w http.ResponseWriter, r *http.Request, data []byte) bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hook = h
}
