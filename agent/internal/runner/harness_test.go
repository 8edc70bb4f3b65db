//go:build unix

package runner

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dropless/dropless/agent/internal/config"
	"github.com/dropless/dropless/agent/internal/engine"
	"github.com/dropless/dropless/pkg/bundle"
	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/pkg/testutil"
)

// The runner tests run a real runner (engine, journal, app commands, the
// agent API client) against agentServer, a real HTTP server on loopback
// that speaks the agent API as the update server does and can misbehave
// as a bad proxy would. Bundles come from fileFetcher (the TUF client is
// tested in agent/internal/fetch and end to end in testenv).

const product = "acme-erp"

// agentServer answers enroll, check-in and events.
type agentServer struct {
	t   *testing.T
	srv *httptest.Server

	mu          sync.Mutex
	tokens      map[string]bool // enroll tokens still usable (each once)
	creds       map[string]bool // credentials it accepts
	enrolls     int
	assignment  *protocol.Assignment
	checkins    []string // the credential of every check-in, accepted or not
	events      []protocol.Event
	refuseCreds bool // answer every check-in 401
	// hangAfter, when > 0, holds every check-in after the first
	// hangAfter until the client gives up.
	hangAfter int
	// root, when set, is served as the TUF repository's 1.root.json.
	root []byte
}

func newAgentServer(t *testing.T, tokens ...string) *agentServer {
	s := &agentServer{t: t, tokens: map[string]bool{}, creds: map[string]bool{}}
	for _, tok := range tokens {
		s.tokens[tok] = true
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/agent/enroll", s.enroll)
	mux.HandleFunc("POST /api/v1/agent/checkin", s.checkin)
	mux.HandleFunc("POST /api/v1/agent/events", s.eventsHandler)
	mux.HandleFunc("GET /tuf/metadata/1.root.json", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		root := s.root
		s.mu.Unlock()
		if root == nil {
			http.NotFound(w, r)
			return
		}
		w.Write(root)
	})
	s.srv = httptest.NewServer(mux)
	t.Cleanup(s.srv.Close)
	return s
}

func writeErr(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(protocol.ErrorResponse{Error: protocol.ErrorBody{Code: protocol.CodeUnauthorized, Message: msg}})
}

func (s *agentServer) enroll(w http.ResponseWriter, r *http.Request) {
	var req protocol.EnrollRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeErr(w, 400, err.Error())
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.tokens[req.Token] {
		writeErr(w, http.StatusUnauthorized, "the enroll token has been used up: ask support for a new one (updateserver enroll-token create)")
		return
	}
	delete(s.tokens, req.Token)
	s.enrolls++
	cred := fmt.Sprintf("dla_cred-%d", s.enrolls)
	s.creds[cred] = true
	w.WriteHeader(http.StatusCreated)
	json.NewEncoder(w).Encode(protocol.EnrollResponse{Site: req.Site, Credential: cred})
}

func (s *agentServer) auth(r *http.Request) (string, bool) {
	cred := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	return cred, s.creds[cred] && !s.refuseCreds
}

func (s *agentServer) checkin(w http.ResponseWriter, r *http.Request) {
	var req protocol.CheckinRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeErr(w, 400, err.Error())
		return
	}
	s.mu.Lock()
	cred, ok := s.auth(r)
	s.checkins = append(s.checkins, cred)
	n, hang, a := len(s.checkins), s.hangAfter, s.assignment
	s.mu.Unlock()
	if !ok {
		writeErr(w, http.StatusUnauthorized, "the agent credential is not valid: enroll the agent again with a new enroll token")
		return
	}
	if hang > 0 && n > hang {
		<-r.Context().Done() // a proxy that never answers
		return
	}
	if a == nil {
		// A short long-poll: the tests need no more.
		select {
		case <-r.Context().Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	json.NewEncoder(w).Encode(protocol.CheckinResponse{Assignment: a, Window: protocol.WindowStatus{Open: true}})
}

func (s *agentServer) eventsHandler(w http.ResponseWriter, r *http.Request) {
	var req protocol.EventsRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeErr(w, 400, err.Error())
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.auth(r); !ok {
		writeErr(w, http.StatusUnauthorized, "the agent credential is not valid")
		return
	}
	s.events = append(s.events, req.Events...)
	json.NewEncoder(w).Encode(protocol.EventsResponse{Accepted: len(req.Events)})
}

func (s *agentServer) assign(a protocol.Assignment) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.assignment = &a
}

// with runs f with the server's lock held.
func (s *agentServer) with(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f()
}

// fileFetcher serves bundles from files, as the TUF client would after
// verifying them. failNext, when set, fails the next Download with it.
type fileFetcher struct {
	mu       sync.Mutex
	files    map[string]string // target path -> bundle file
	failNext error
}

func (f *fileFetcher) file(path string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	file, ok := f.files[path]
	if !ok {
		return "", fmt.Errorf("target %s not found", path)
	}
	return file, nil
}

func (f *fileFetcher) Target(ctx context.Context, path string) (int64, string, protocol.TargetCustom, error) {
	file, err := f.file(path)
	if err != nil {
		return 0, "", protocol.TargetCustom{}, err
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, "", protocol.TargetCustom{}, err
	}
	sum := sha256.Sum256(b)
	v := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(path), product+"-"), ".tar.gz")
	return int64(len(b)), hex.EncodeToString(sum[:]), protocol.TargetCustom{Product: product, Version: v}, nil
}

func (f *fileFetcher) Download(ctx context.Context, path, dst string) error {
	f.mu.Lock()
	failure := f.failNext
	f.failNext = nil
	f.mu.Unlock()
	if failure != nil {
		return failure
	}
	file, err := f.file(path)
	if err != nil {
		return err
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	if err := os.WriteFile(dst+".part", b, 0o600); err != nil {
		return err
	}
	return os.Rename(dst+".part", dst)
}

// agentSite is one site: a config for the runner, its app and bundles.
type agentSite struct {
	dir     string
	cfg     *config.Config
	fetcher *fileFetcher
	runFile string // the app "runs" while this file exists; it holds its version
	// fault, when set, is the engine's JournalFault.
	fault func(what string) error
	// grace is the check-ins' deadline past their long-poll wait.
	grace time.Duration
	// log is the log of the runner start started last.
	log *testutil.Log
}

func newAgentSite(t *testing.T, srv *agentServer, token string) *agentSite {
	dir := t.TempDir()
	s := &agentSite{dir: dir, fetcher: &fileFetcher{files: map[string]string{}}, runFile: filepath.Join(dir, "app.running")}
	s.cfg = &config.Config{
		Server: srv.srv.URL, Site: "acme-prod", Client: "acme", Product: product,
		EnrollToken: token,
		// Nothing serves TUF metadata here: the root check retries in
		// the background without holding anything up.
		RootSHA256:   strings.Repeat("ab", 32),
		MetadataURL:  srv.srv.URL + "/tuf/metadata/",
		TargetsURL:   srv.srv.URL + "/tuf/targets/",
		InstallDir:   filepath.Join(dir, "install"),
		DataDir:      filepath.Join(dir, "data"),
		PollInterval: config.Duration{Duration: time.Second},
		App: config.App{
			// The app's work dir is <install_dir>/current.
			Start:          []string{"sh", "-c", `cp VERSION "$0"`, s.runFile},
			Stop:           []string{"rm", "-f", s.runFile},
			HealthCmd:      []string{"test", "-f", s.runFile},
			HealthTimeout:  config.Duration{Duration: 5 * time.Second},
			CommandTimeout: config.Duration{Duration: 10 * time.Second},
		},
	}
	return s
}

// release packs the bundle of version v and returns its assignment.
func (s *agentSite) release(t *testing.T, v string) protocol.Assignment {
	t.Helper()
	src := filepath.Join(s.dir, "src-"+v)
	if err := os.MkdirAll(filepath.Join(src, "files"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "files", "VERSION"), []byte(v+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := bundle.Pack(context.Background(), src, &buf); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(s.dir, v+".tar.gz")
	if err := os.WriteFile(file, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	target := protocol.TargetPath(product, v)
	s.fetcher.mu.Lock()
	s.fetcher.files[target] = file
	s.fetcher.mu.Unlock()
	return protocol.Assignment{JobID: "job-" + v, Product: product, Version: v, Target: target}
}

// running returns the version the app runs, "" when it does not.
func (s *agentSite) running() string {
	b, err := os.ReadFile(s.runFile)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// start runs a runner for the site until the test ends (or the returned
// stop is called); it returns the runner.
func (s *agentSite) start(t *testing.T) (*Runner, func()) {
	t.Helper()
	s.log = testutil.NewLog(t, slog.LevelDebug)
	r := New(s.cfg, s.log.Logger())
	r.engineConfig = func(c *engine.Config) {
		c.Fetcher = s.fetcher
		c.JournalFault = s.fault
	}
	r.api.CheckinGrace = s.grace
	if r.api.CheckinGrace == 0 {
		r.api.CheckinGrace = 5 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return r, stop
}

// status reads the site's status as `updateagent status` does.
func (s *agentSite) status(t *testing.T) (engine.Status, Contact) {
	t.Helper()
	st, err := engine.ReadStatus(s.cfg.DataDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Logf("ReadStatus: %v", err)
	}
	c, _ := ReadContact(s.cfg.DataDir)
	return st, c
}

// ended returns the site's last ended job if it is id and no job is unfinished.
func (s *agentSite) ended(t *testing.T, id string) *protocol.JobStatus {
	st, _ := s.status(t)
	if st.LastJob != nil && st.LastJob.ID == id && st.CurrentJob == nil {
		return st.LastJob
	}
	return nil
}

// await polls cond until it holds, failing the test after a minute.
func await(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
