// Package tuftest is a TUF repository for tests, in the spirit of
// go-tuf's internal/testutils/simulator: real ed25519 keys, metadata
// signed with go-tuf's metadata package, served over HTTP on 127.0.0.1
// with consistent snapshots and hash-prefixed targets, and a log of the
// requests it answered. Tests change it (publish, re-sign with other
// keys, serve old versions, rotate the root, answer target requests
// themselves) to play the attacks, one test per attack. It is imported
// by tests only (repo_test.go checks).
//
// The repository's fields are the metadata as it will be signed next:
// change them, then Publish (or PublishSnapshot, PublishTimestamp,
// PublishRoot) to sign and serve a new version.
package tuftest

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Key is an ed25519 signing key and its TUF public key.
type Key struct {
	Signer signature.Signer
	Key    *metadata.Key
	ID     string
}

// NewKey makes a new key.
func NewKey(t testing.TB) *Key {
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
	return &Key{Signer: s, Key: k, ID: id}
}

// Request is one request the repository answered.
type Request struct {
	Path  string // decoded
	Range string // the Range header, if any
}

// Repo is a TUF repository served on loopback until the test ends.
type Repo struct {
	t testing.TB

	// Keys signs each role; the root is signed by every key listed.
	Keys      map[string][]*Key
	Root      *metadata.Metadata[metadata.RootType]
	Targets   *metadata.Metadata[metadata.TargetsType]
	Delegated map[string]*metadata.Metadata[metadata.TargetsType]
	Snapshot  *metadata.Metadata[metadata.SnapshotType]
	Timestamp *metadata.Metadata[metadata.TimestampType]
	// TimestampExpiry is how long a timestamp signed now lasts.
	TimestampExpiry time.Duration

	mu    sync.Mutex
	meta  map[string][]byte // served under /metadata/: 1.root.json, timestamp.json, N.snapshot.json, ...
	blobs map[string][]byte // served under /targets/, by hash-prefixed path
	reqs  []Request
	hook  func(w http.ResponseWriter, r *http.Request, data []byte) bool // may answer a target request itself

	srv *httptest.Server
}

// New publishes version 1 of every role, one key per role and no
// targets, and serves it.
func New(t testing.TB) *Repo {
	t.Helper()
	far := time.Now().Add(30 * 24 * time.Hour).UTC().Truncate(time.Second)
	r := &Repo{
		t:               t,
		Keys:            map[string][]*Key{},
		Root:            metadata.Root(far),
		Targets:         metadata.Targets(far),
		Delegated:       map[string]*metadata.Metadata[metadata.TargetsType]{},
		Snapshot:        metadata.Snapshot(far),
		Timestamp:       metadata.Timestamp(far),
		TimestampExpiry: 24 * time.Hour,
		meta:            map[string][]byte{},
		blobs:           map[string][]byte{},
	}
	for _, role := range metadata.TOP_LEVEL_ROLE_NAMES {
		k := NewKey(t)
		r.Keys[role] = []*Key{k}
		if err := r.Root.Signed.AddKey(k.Key, role); err != nil {
			t.Fatal(err)
		}
	}
	r.Root.Signed.ConsistentSnapshot = true
	r.PublishRoot()
	r.Targets.Signed.Version = 0
	r.Snapshot.Signed.Version = 0
	r.Timestamp.Signed.Version = 0
	r.Publish()

	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

// URL is the repository's base URL (http://127.0.0.1:port).
func (r *Repo) URL() string { return r.srv.URL }

// MetadataURL and TargetsURL are where metadata and targets are served,
// without a trailing slash.
func (r *Repo) MetadataURL() string { return r.srv.URL + "/metadata" }
func (r *Repo) TargetsURL() string  { return r.srv.URL + "/targets" }

// Sign signs md with keys (only them) and returns its bytes.
func Sign[T metadata.Roles](t testing.TB, md *metadata.Metadata[T], keys ...*Key) []byte {
	t.Helper()
	md.ClearSignatures()
	for _, k := range keys {
		if _, err := md.Sign(k.Signer); err != nil {
			t.Fatal(err)
		}
	}
	b, err := md.ToBytes(true)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// SetMeta serves b as the metadata file name (e.g. "3.snapshot.json").
func (r *Repo) SetMeta(name string, b []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.meta[name] = b
}

// Meta returns the metadata file served as name, nil when there is none.
func (r *Repo) Meta(name string) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.meta[name]
}

// DeleteMeta stops serving the metadata file name.
func (r *Repo) DeleteMeta(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.meta, name)
}

// PublishRoot signs the current root with every root key (and extra) and
// serves it as N.root.json.
func (r *Repo) PublishRoot(extra ...*Key) []byte {
	b := Sign(r.t, r.Root, append(append([]*Key{}, r.Keys[metadata.ROOT]...), extra...)...)
	r.SetMeta(fmt.Sprintf("%d.root.json", r.Root.Signed.Version), b)
	return b
}

// RootV1 is the initial root, the one clients pin or are given by init.
func (r *Repo) RootV1() []byte { return r.Meta("1.root.json") }

// Publish bumps and signs targets (and delegated roles), snapshot and
// timestamp, as a release does.
func (r *Repo) Publish() {
	r.Targets.Signed.Version++
	r.SetMeta(fmt.Sprintf("%d.targets.json", r.Targets.Signed.Version), Sign(r.t, r.Targets, r.Keys[metadata.TARGETS]...))
	r.Snapshot.Signed.Meta["targets.json"] = metadata.MetaFile(r.Targets.Signed.Version)
	for name, md := range r.Delegated {
		md.Signed.Version++
		r.SetMeta(fmt.Sprintf("%d.%s.json", md.Signed.Version, name), Sign(r.t, md, r.Keys[name]...))
		r.Snapshot.Signed.Meta[name+".json"] = metadata.MetaFile(md.Signed.Version)
	}
	r.PublishSnapshot()
}

// PublishSnapshot bumps and signs the snapshot, then the timestamp.
func (r *Repo) PublishSnapshot() {
	r.Snapshot.Signed.Version++
	r.SetMeta(fmt.Sprintf("%d.snapshot.json", r.Snapshot.Signed.Version), Sign(r.t, r.Snapshot, r.Keys[metadata.SNAPSHOT]...))
	r.PublishTimestamp(r.Snapshot.Signed.Version)
}

// PublishTimestamp bumps and signs a timestamp over snapshot version
// snapV (which may be an old one) and serves it as timestamp.json.
func (r *Repo) PublishTimestamp(snapV int64) []byte {
	snap := r.Meta(fmt.Sprintf("%d.snapshot.json", snapV))
	if snap == nil {
		r.t.Fatalf("no snapshot version %d", snapV)
	}
	sum := sha256.Sum256(snap)
	mf := metadata.MetaFile(snapV)
	mf.Length = int64(len(snap))
	mf.Hashes = metadata.Hashes{"sha256": sum[:]}
	r.Timestamp.Signed.Meta["snapshot.json"] = mf
	r.Timestamp.Signed.Version++
	r.Timestamp.Signed.Expires = time.Now().Add(r.TimestampExpiry).UTC().Truncate(time.Second)
	b := Sign(r.t, r.Timestamp, r.Keys[metadata.TIMESTAMP]...)
	r.SetMeta("timestamp.json", b)
	return b
}

// AddTarget lists data as path in role's targets metadata (with sha256
// and sha512, and custom metadata if not nil) and serves it; Publish to
// sign.
func (r *Repo) AddTarget(role, path string, data []byte, custom any) *metadata.TargetFiles {
	r.t.Helper()
	tf := metadata.TargetFile()
	tf.Length = int64(len(data))
	s256 := sha256.Sum256(data)
	s512 := sha512.Sum512(data)
	tf.Hashes = metadata.Hashes{"sha256": s256[:], "sha512": s512[:]}
	if custom != nil {
		b, err := json.Marshal(custom)
		if err != nil {
			r.t.Fatal(err)
		}
		raw := json.RawMessage(b)
		tf.Custom = &raw
	}
	md := r.Targets
	if role != metadata.TARGETS {
		md = r.Delegated[role]
	}
	md.Signed.Targets[path] = tf
	r.SetBlob(path, data, data)
	return tf
}

// SetBlob serves data at the hash-prefixed URL of content listed (which
// may differ from data: an altered target).
func (r *Repo) SetBlob(targetPath string, listed, data []byte) {
	dir, base := path.Split(targetPath)
	sum := sha256.Sum256(listed)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.blobs[dir+hex.EncodeToString(sum[:])+"."+base] = data
}

// Delegate makes targets delegate paths to a new role with its own key.
func (r *Repo) Delegate(role string, paths ...string) {
	k := NewKey(r.t)
	r.Keys[role] = []*Key{k}
	if r.Targets.Signed.Delegations == nil {
		r.Targets.Signed.Delegations = &metadata.Delegations{Keys: map[string]*metadata.Key{}}
	}
	r.Targets.Signed.Delegations.Roles = append(r.Targets.Signed.Delegations.Roles, metadata.DelegatedRole{
		Name: role, KeyIDs: []string{}, Threshold: 1, Paths: paths,
	})
	if err := r.Targets.Signed.AddKey(k.Key, role); err != nil {
		r.t.Fatal(err)
	}
	md := metadata.Targets(r.Targets.Signed.Expires)
	md.Signed.Version = 0
	r.Delegated[role] = md
}

// ReplaceRootKey gives role a new key in a new root version. For the root
// role the new root is signed by the old keys if signOld and by the new
// one if signNew (a valid rotation needs both); for another role by the
// current root keys. It returns the new key and the new root's bytes.
func (r *Repo) ReplaceRootKey(role string, signOld, signNew bool) (*Key, []byte) {
	old := r.Keys[role]
	k := NewKey(r.t)
	for _, o := range old {
		if err := r.Root.Signed.RevokeKey(o.ID, role); err != nil {
			r.t.Fatal(err)
		}
	}
	if err := r.Root.Signed.AddKey(k.Key, role); err != nil {
		r.t.Fatal(err)
	}
	r.Root.Signed.Version++
	var signers []*Key
	if role == metadata.ROOT {
		if signOld {
			signers = append(signers, old...)
		}
		if signNew {
			signers = append(signers, k)
		}
	} else {
		signers = r.Keys[metadata.ROOT]
	}
	r.Keys[role] = []*Key{k}
	b := Sign(r.t, r.Root, signers...)
	r.SetMeta(fmt.Sprintf("%d.root.json", r.Root.Signed.Version), b)
	return k, b
}

func (r *Repo) serve(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	r.reqs = append(r.reqs, Request{Path: req.URL.Path, Range: req.Header.Get("Range")})
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

// Requests returns the requests answered so far, oldest first.
func (r *Repo) Requests() []Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Request(nil), r.reqs...)
}

// Paths returns the paths requested so far under prefix.
func (r *Repo) Paths(prefix string) []string {
	var out []string
	for _, q := range r.Requests() {
		if strings.HasPrefix(q.Path, prefix) {
			out = append(out, q.Path)
		}
	}
	return out
}

// SetHook sets a function that may answer a target request itself
// (returning true), given the content the repository would serve; nil
// removes it. Metadata requests never reach it.
func (r *Repo) SetHook(h func(w http.ResponseWriter, r *http.Request, data []byte) bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hook = h
}

// DirFiles reads every file in dir (not its subdirectories), name to
// content: a client's metadata dir, to compare before and after.
func DirFiles(t testing.TB, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = string(b)
	}
	return out
}

// WriteDir writes the repository as a static mirror lays it out:
// dir/metadata/<name> for every metadata file served and
// dir/targets/<hash-prefixed path> for every target.
func (r *Repo) WriteDir(dir string) {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	write := func(p string, b []byte) {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			r.t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			r.t.Fatal(err)
		}
	}
	for name, b := range r.meta {
		write(filepath.Join(dir, "metadata", name), b)
	}
	for p, b := range r.blobs {
		write(filepath.Join(dir, "targets", filepath.FromSlash(p)), b)
	}
}
