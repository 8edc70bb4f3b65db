// Package fetch is the agent's update channel: a TUF client (go-tuf/v2's
// updater, with our own HTTP fetcher) that pins the repository's root and
// downloads targets by streaming them to disk, verified.
//
// The flow is Bootstrap (or Init), Refresh, Target, Download. go-tuf checks
// signatures, expiry, versions and the delegation graph and keeps the
// trusted metadata in Config.MetadataDir; this package gives it a fetcher
// that honours a context and the length limits, fsyncs what go-tuf wrote,
// and downloads targets itself: streamed to a .part file, resumed with
// Range requests, verified against the trusted length and hashes, and only
// then renamed into place. Every failure is an *Error whose Kind says why
// (Reason gives it as a string for job events).
package fetch

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/dropless/dropless/pkg/atomicfile"
)

// Config says where the repository is and where trusted metadata lives.
type Config struct {
	MetadataURL string // e.g. http://host/tuf/metadata/ (trailing slash optional); needed by Bootstrap, Refresh, Target
	TargetsURL  string // e.g. http://host/tuf/targets/; needed by Download
	// MetadataDir holds the trusted metadata under unversioned names:
	// root.json, timestamp.json, snapshot.json, targets.json and
	// <path-escaped role>.json for delegated roles.
	MetadataDir string
	// RootSHA256 is the hex SHA-256 pin of the repository's initial
	// root.json (1.root.json), which Bootstrap fetches; "" when the root is
	// given to Init instead.
	RootSHA256 string
	// HTTPClient is used for every request; nil means a client with
	// timeouts for dialing, TLS and response headers (http.DefaultClient is
	// never used nor changed).
	HTTPClient *http.Client
	// TLS verifies an https repository when HTTPClient is nil (e.g. the
	// system's roots plus the agent's ca_file); nil means Go's defaults.
	// With it set, a certificate that fails verification is an error
	// that names the problem and says to set ca_file.
	TLS *tls.Config
	// RefTime is the reference time for metadata expiry; nil means
	// time.Now. The tuf-client command sets it from FAKETIME.
	RefTime func() time.Time
	Log     *slog.Logger
	// Server, when set, is asked before each request for the server the
	// repository is read from now: metadata and targets are then under
	// <Server()>/tuf/metadata/ and /tuf/targets/ (MetadataURL and
	// TargetsURL are not used). An agent with several servers (replicas)
	// reads the repository from the one it talks to.
	Server func() string
	// Unreachable, when set, is called with the server of a request that
	// got no answer or a 5xx, before it is tried again: the agent moves
	// on to its next server.
	Unreachable func(server string)
}

// rootMaxLength bounds a root.json fetched by Bootstrap, as go-tuf's
// default bounds the ones the updater fetches.
const rootMaxLength = 512000

func (cfg Config) validate() error {
	if cfg.MetadataDir == "" {
		return &Error{Kind: ErrConfig, Msg: "MetadataDir is empty: the trusted metadata needs a directory"}
	}
	for _, u := range []struct{ name, val string }{{"MetadataURL", cfg.MetadataURL}, {"TargetsURL", cfg.TargetsURL}} {
		if u.val == "" {
			continue
		}
		p, err := url.Parse(u.val)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return &Error{Kind: ErrConfig, Msg: fmt.Sprintf("%s %q is not an http:// or https:// URL", u.name, u.val)}
		}
	}
	if cfg.RootSHA256 != "" {
		if b, err := hex.DecodeString(cfg.RootSHA256); err != nil || len(b) != sha256.Size {
			return &Error{Kind: ErrConfig, Msg: fmt.Sprintf("RootSHA256 %q is not a hex SHA-256 digest (64 hex digits)", cfg.RootSHA256)}
		}
	}
	return nil
}

// Client is a TUF client for one repository. Its methods may be called from
// several goroutines; calls that use go-tuf's updater (Refresh, Target) run
// one at a time.
type Client struct {
	dir         string
	metadataURL string // with a trailing slash, or ""
	targetsURL  string // with a trailing slash, or ""
	server      func() string
	unreachable func(string)
	pin         string // lower-case hex, or ""
	http        *http.Client
	now         func() time.Time
	log         *slog.Logger

	// Tuning, shortened by tests.
	metaTimeout   time.Duration // per metadata request
	metaAttempts  int           // tries per metadata file
	retries       int           // download retries in a row without progress
	backoff       time.Duration // first pause before a retry
	stallTimeout  time.Duration // a download with no data for this long is retried
	maxRootLength int64

	mu         sync.Mutex // guards the fields below; held while go-tuf's updater runs (it is not safe for concurrent use)
	up         *updater.Updater
	fetcher    *httpFetcher
	consistent bool // the trusted root's consistent_snapshot, once refreshed
	refreshed  bool
}

// New checks cfg and returns a Client. It does no I/O.
func New(cfg Config) (*Client, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	c := &Client{
		dir:           cfg.MetadataDir,
		metadataURL:   withSlash(cfg.MetadataURL),
		targetsURL:    withSlash(cfg.TargetsURL),
		server:        cfg.Server,
		unreachable:   cfg.Unreachable,
		pin:           strings.ToLower(cfg.RootSHA256),
		http:          cfg.HTTPClient,
		now:           cfg.RefTime,
		log:           cfg.Log,
		metaTimeout:   2 * time.Minute,
		metaAttempts:  3,
		retries:       5,
		backoff:       500 * time.Millisecond,
		stallTimeout:  time.Minute,
		maxRootLength: rootMaxLength,
	}
	if c.http == nil {
		c.http = defaultHTTPClient(cfg.TLS)
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	adaptTUFLogger(c.log)
	return c, nil
}

// urls is where metadata and targets are read now (with trailing
// slashes, or "").
func (c *Client) urls() (metadataURL, targetsURL string) {
	if c.server != nil {
		s := strings.TrimRight(c.server(), "/")
		return s + "/tuf/metadata/", s + "/tuf/targets/"
	}
	return c.metadataURL, c.targetsURL
}

// failed tells Config.Unreachable that the server of url gave no answer.
func (c *Client) failed(url string) {
	if c.server == nil || c.unreachable == nil {
		return
	}
	if s := c.server(); strings.HasPrefix(url, strings.TrimRight(s, "/")+"/") {
		c.unreachable(s)
	}
}

func withSlash(u string) string {
	if u == "" || strings.HasSuffix(u, "/") {
		return u
	}
	return u + "/"
}

func (c *Client) rootPath() string { return filepath.Join(c.dir, "root.json") }

func (c *Client) newFetcher() *httpFetcher {
	return &httpFetcher{
		client:   c.http,
		log:      c.log,
		timeout:  c.metaTimeout,
		attempts: c.metaAttempts,
		backoff:  c.backoff,
		failed:   c.failed,
	}
}

// Init stores rootJSON as the trusted root (MetadataDir/root.json),
// without any request. The bytes must be root metadata; if RootSHA256 is
// set they must also match it.
func (c *Client) Init(rootJSON []byte) error {
	if _, err := metadata.Root().FromBytes(rootJSON); err != nil {
		return &Error{Kind: ErrBadMetadata, Role: metadata.ROOT, Msg: oneLine("the initial root is not root metadata: " + err.Error()), Err: err}
	}
	if c.pin != "" {
		if got := sha256Hex(rootJSON); got != c.pin {
			return &Error{Kind: ErrRootPin, Role: metadata.ROOT, Msg: fmt.Sprintf("the initial root.json has sha256 %s, but root_sha256 pins %s: refusing it", got, c.pin), RootSHA256: got}
		}
	}
	return c.storeRoot(rootJSON)
}

// Bootstrap makes sure a trusted root exists. If MetadataDir/root.json is
// missing (or unreadable as root metadata), it fetches
// <MetadataURL>1.root.json and stores it only if its SHA-256 is RootSHA256.
// With a trusted root in place it makes no request.
func (c *Client) Bootstrap(ctx context.Context) error {
	data, err := os.ReadFile(c.rootPath())
	switch {
	case err == nil:
		_, perr := metadata.Root().FromBytes(data)
		if perr == nil {
			return nil
		}
		if c.pin == "" {
			return &Error{Kind: ErrNoRoot, Role: metadata.ROOT, Msg: oneLine(fmt.Sprintf("the trusted %s is corrupt (%v) and there is no root_sha256 pin to fetch it again with", c.rootPath(), perr)), Err: perr}
		}
		// Only go-tuf writes root.json after us, without fsync: after a
		// power loss it may be empty. The pin lets us start again from
		// 1.root.json; Refresh then walks the rotations again.
		c.log.Warn("the trusted root.json is corrupt: fetching the pinned initial root again", "path", c.rootPath(), "err", perr)
	case errors.Is(err, fs.ErrNotExist):
	default:
		return &Error{Kind: ErrLocal, Role: metadata.ROOT, Msg: oneLine(err.Error()), Err: err}
	}
	if c.pin == "" {
		return &Error{Kind: ErrNoRoot, Role: metadata.ROOT, Msg: fmt.Sprintf("no trusted root.json in %s and no root_sha256 pin: give the root with init or set root_sha256", c.dir)}
	}
	metadataURL, _ := c.urls()
	if metadataURL == "" {
		return &Error{Kind: ErrConfig, Role: metadata.ROOT, Msg: "no metadata URL to fetch the initial root from"}
	}
	u := metadataURL + "1.root.json"
	f := c.newFetcher()
	unbind := f.bind(ctx)
	data, err = f.DownloadFile(u, c.maxRootLength, 0)
	unbind()
	if err != nil {
		return classify(ctx, err, f.lastFetch(), nil, c.now())
	}
	if got := sha256Hex(data); got != c.pin {
		return &Error{Kind: ErrRootPin, Role: metadata.ROOT, Msg: fmt.Sprintf("root.json from %s has sha256 %s, but root_sha256 pins %s: refusing it", u, got, c.pin), RootSHA256: got}
	}
	if _, err := metadata.Root().FromBytes(data); err != nil {
		return &Error{Kind: ErrBadMetadata, Role: metadata.ROOT, Msg: oneLine(fmt.Sprintf("root.json from %s matches the pin but is not root metadata: %v", u, err)), Err: err}
	}
	if err := c.storeRoot(data); err != nil {
		return err
	}
	c.log.Info("trusted the pinned initial root", "url", u, "sha256", c.pin)
	return nil
}

func (c *Client) storeRoot(data []byte) error {
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return &Error{Kind: ErrLocal, Role: metadata.ROOT, Msg: oneLine(err.Error()), Err: err}
	}
	if err := atomicfile.WriteFile(c.rootPath(), data, 0o644); err != nil {
		return &Error{Kind: ErrLocal, Role: metadata.ROOT, Msg: oneLine(err.Error()), Err: err}
	}
	c.mu.Lock()
	c.up, c.fetcher, c.refreshed = nil, nil, false
	c.mu.Unlock()
	return nil
}

// Refresh runs the TUF client workflow for the top-level roles through
// go-tuf's updater: the root rotation chain, then timestamp, snapshot and
// targets, each checked for signatures, expiry (at Config.RefTime) and
// rollback. go-tuf writes what it trusts to MetadataDir; Refresh then
// fsyncs it. A refused Refresh leaves the metadata go-tuf had trusted so
// far (for example a newer root) and the rest unchanged.
func (c *Client) Refresh(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.refreshLocked(ctx)
}

// refreshLocked is Refresh; c.mu must be held.
func (c *Client) refreshLocked(ctx context.Context) error {
	c.up, c.fetcher, c.refreshed = nil, nil, false
	metadataURL, targetsURL := c.urls()
	if metadataURL == "" {
		return &Error{Kind: ErrConfig, Msg: "no metadata URL to refresh from"}
	}
	rootBytes, err := os.ReadFile(c.rootPath())
	if errors.Is(err, fs.ErrNotExist) {
		return &Error{Kind: ErrNoRoot, Role: metadata.ROOT, Msg: fmt.Sprintf("no trusted root.json in %s: run init or bootstrap first", c.dir)}
	}
	if err != nil {
		return &Error{Kind: ErrLocal, Role: metadata.ROOT, Msg: oneLine(err.Error()), Err: err}
	}
	c.cleanCache()
	cfg, err := config.New(metadataURL, rootBytes)
	if err != nil {
		return &Error{Kind: ErrConfig, Msg: oneLine(err.Error()), Err: err}
	}
	cfg.LocalMetadataDir = c.dir
	cfg.LocalTargetsDir = c.dir // never written: we download targets ourselves
	if targetsURL != "" {
		cfg.RemoteTargetsURL = targetsURL
	}
	f := c.newFetcher()
	cfg.Fetcher = f
	unbind := f.bind(ctx)
	defer unbind()
	ref := c.now()

	up, err := updater.New(cfg) // verifies root.json by itself and rewrites it
	if err != nil {
		err = classify(ctx, err, fetchRecord{role: metadata.ROOT}, nil, ref)
		return errors.Join(err, c.syncMetadata())
	}
	up.UnsafeSetRefTime(ref)
	err = up.Refresh()
	syncErr := c.syncMetadata()
	if err != nil {
		trusted := up.GetTrustedMetadataSet()
		return classify(ctx, err, f.lastFetch(), &trusted, ref)
	}
	if syncErr != nil {
		return syncErr
	}
	trusted := up.GetTrustedMetadataSet()
	c.up, c.fetcher, c.refreshed = up, f, true
	c.consistent = trusted.Root.Signed.ConsistentSnapshot
	c.log.Info("refreshed TUF metadata",
		"root", trusted.Root.Signed.Version,
		"timestamp", trusted.Timestamp.Signed.Version,
		"snapshot", trusted.Snapshot.Signed.Version,
		"targets", trusted.Targets[metadata.TARGETS].Signed.Version,
		"ref_time", ref.UTC().Format(time.RFC3339))
	return nil
}

// cleanCache removes what a crash may have left in MetadataDir: go-tuf's
// temporary files, and cached metadata that no longer parses (go-tuf
// writes without fsync, and it takes a cached file that is not even JSON
// as a fatal error rather than as a cache miss). c.mu must be held.
func (c *Client) cleanCache() {
	entries, err := os.ReadDir(c.dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		name := e.Name()
		p := filepath.Join(c.dir, name)
		switch {
		case strings.HasPrefix(name, "tuf_tmp"):
			c.log.Debug("removing a temporary file go-tuf left", "path", p)
			os.Remove(p)
			continue
		case e.IsDir() || !strings.HasSuffix(name, ".json") || name == "root.json":
			continue
		}
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		switch name {
		case "timestamp.json":
			_, err = metadata.Timestamp().FromBytes(data)
		case "snapshot.json":
			_, err = metadata.Snapshot().FromBytes(data)
		default:
			_, err = metadata.Targets().FromBytes(data)
		}
		if err != nil {
			c.log.Warn("removing cached metadata that does not parse", "path", p, "err", err)
			os.Remove(p)
		}
	}
}

// syncMetadata fsyncs the metadata files and their directory, which go-tuf
// wrote (temp file and rename) without fsync.
func (c *Client) syncMetadata() error {
	entries, err := os.ReadDir(c.dir)
	if err != nil {
		return &Error{Kind: ErrLocal, Msg: oneLine(err.Error()), Err: err}
	}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		if err := atomicfile.SyncFile(filepath.Join(c.dir, e.Name())); err != nil {
			return &Error{Kind: ErrLocal, Msg: oneLine(err.Error()), Err: err}
		}
	}
	if err := atomicfile.SyncDir(c.dir); err != nil {
		return &Error{Kind: ErrLocal, Msg: oneLine(err.Error()), Err: err}
	}
	return nil
}

// Target is a target as the trusted metadata describes it.
type Target struct {
	Path   string
	Length int64
	Hashes map[string]string // algorithm -> hex digest
	Custom json.RawMessage   // the target's custom metadata (protocol.ParseTargetCustom reads it); nil if none
}

// Target resolves path through the delegation graph (loading delegated
// targets metadata as needed) and returns its trusted length, hashes and
// custom metadata. It refreshes first if Refresh has not succeeded yet.
// A path no trusted role lists is an ErrNotFound.
func (c *Client) Target(ctx context.Context, path string) (*Target, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.refreshed {
		if err := c.refreshLocked(ctx); err != nil {
			return nil, err
		}
	}
	unbind := c.fetcher.bind(ctx)
	tf, err := c.up.GetTargetInfo(path)
	unbind()
	syncErr := c.syncMetadata() // delegated roles go-tuf may have stored
	if err != nil {
		if err.Error() == "target "+path+" not found" { // go-tuf's untyped "no role lists it"
			return nil, &Error{Kind: ErrNotFound, Target: path, Msg: "no trusted targets metadata lists it", Err: err}
		}
		trusted := c.up.GetTrustedMetadataSet()
		return nil, classify(ctx, err, c.fetcher.lastFetch(), &trusted, c.now())
	}
	if syncErr != nil {
		return nil, syncErr
	}
	t := &Target{Path: path, Length: tf.Length, Hashes: map[string]string{}}
	for alg, h := range tf.Hashes {
		t.Hashes[alg] = hex.EncodeToString(h)
	}
	if tf.Custom != nil {
		t.Custom = append(json.RawMessage(nil), *tf.Custom...)
	}
	return t, nil
}

// LocalName turns a target path into a file name: the same path always
// gives the same name and different paths different names. Bytes other
// than ASCII letters, digits, '-', '_' and a '.' that does not start the
// name are %XX-escaped, so the name has no separator, is never "." or ".."
// nor hidden. Very long paths keep a prefix and a hash of the whole path.
func LocalName(targetPath string) string {
	if targetPath == "" {
		return "%" // no escaped name is a lone '%'
	}
	var b strings.Builder
	for i := 0; i < len(targetPath); i++ {
		ch := targetPath[i]
		switch {
		case 'a' <= ch && ch <= 'z', 'A' <= ch && ch <= 'Z', '0' <= ch && ch <= '9', ch == '-', ch == '_', ch == '.' && i > 0:
			b.WriteByte(ch)
		default:
			fmt.Fprintf(&b, "%%%02X", ch)
		}
	}
	name := b.String()
	const maxName = 200 // file systems allow 255 bytes; leave room for ".part"
	if len(name) > maxName {
		// '~' is always escaped above, so these names cannot collide with
		// short ones.
		name = name[:maxName-33] + "~" + sha256Hex([]byte(targetPath))[:32]
	}
	return name
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// The go-tuf logger is global to the process: it is pointed once, at the
// first Client's logger, at Debug level.
var tufLogOnce sync.Once

func adaptTUFLogger(l *slog.Logger) {
	tufLogOnce.Do(func() {
		metadata.SetLogger(tufLogger{l: l.With("component", "go-tuf")})
	})
}

// tufLogger is go-tuf's metadata.Logger on slog.
type tufLogger struct{ l *slog.Logger }

func (t tufLogger) Info(msg string, kv ...any) { t.l.Debug(msg, kv...) }

func (t tufLogger) Error(err error, msg string, kv ...any) {
	t.l.Debug(msg, append(kv, "err", err)...)
}
