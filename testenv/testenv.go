//go:build unix

// Package testenv is the multi-site test harness: it builds the real
// binaries once, starts a real update server and real agents (processes,
// each with its own install and data directories and its own sample app
// on a loopback port), and gives tests script-like steps:
//
//	env := testenv.New(t)
//	env.Publish(t, "1.0.0", testenv.Healthy)
//	site := env.NewSite(t, "acme-prod", "acme")
//	env.MustCLI(t, "upgrade", "--site", "acme-prod", "--to", "1.0.0", "--now")
//	site.AwaitHealthy(t, "1.0.0")
package testenv

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
)

// Binaries are the built programs.
type Binaries struct {
	Dir, Server, Agent, SampleApp string
}

var (
	buildOnce sync.Once
	built     Binaries
	buildErr  error
)

// Build compiles updateserver, updateagent and sampleapp once per test
// binary, into a temp dir.
func Build(t testing.TB) Binaries {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "testenv-bin-")
		if err != nil {
			buildErr = err
			return
		}
		built = Binaries{Dir: dir, Server: filepath.Join(dir, "updateserver"), Agent: filepath.Join(dir, "updateagent"), SampleApp: filepath.Join(dir, "sampleapp")}
		for out, pkg := range map[string]string{
			built.Server:    "github.com/dropless/dropless/updateserver/cmd/updateserver",
			built.Agent:     "github.com/dropless/dropless/agent/cmd/updateagent",
			built.SampleApp: "github.com/dropless/dropless/testenv/sampleapp",
		} {
			cmd := exec.Command("go", "build", "-o", out, pkg)
			if b, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("build %s: %v\n%s", pkg, err, b)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return built
}

// Env is one update server and the sites around it.
type Env struct {
	Bin   Binaries
	Dir   string
	Data  string
	URL   string
	Admin string
	Root  string // root_sha256
	// CAFile, when the server serves HTTPS, is the CA the CLI
	// (UPDATESERVER_CA_FILE) and new sites (ca_file) trust.
	CAFile string

	listen string
	server *Proc
}

// setup is what Options adjust.
type setup struct {
	args   []string // of `updateserver serve`
	https  bool
	caFile string
}

// Option adjusts how the server is started.
type Option func(*setup)

// ServerArgs adds flags to `updateserver serve`.
func ServerArgs(args ...string) Option { return func(s *setup) { s.args = append(s.args, args...) } }

// Store keeps the server's state in the store url names (serve --store),
// e.g. a PostgreSQL schema of the test's own (dbtest.PostgresSchema).
func Store(url string) Option { return ServerArgs("--store", url) }

// TLS serves HTTPS with the certificate and key files and makes the CLI
// and the sites' agents trust caFile.
func TLS(certFile, keyFile, caFile string) Option {
	return func(s *setup) {
		s.args = append(s.args, "--tls-cert", certFile, "--tls-key", keyFile)
		s.https, s.caFile = true, caFile
	}
}

// New starts a real update server on a free loopback port.
func New(t testing.TB, opts ...Option) *Env {
	t.Helper()
	e := &Env{Bin: Build(t), Dir: t.TempDir()}
	e.Data = filepath.Join(e.Dir, "server")
	e.listen = freeAddr(t)
	st := setup{args: []string{"serve", "--data", e.Data, "--listen", e.listen, "--poll-interval", "2s"}}
	for _, o := range opts {
		o(&st)
	}
	e.URL = "http://" + e.listen
	if st.https {
		e.URL = "https://" + e.listen
	}
	e.CAFile = st.caFile
	e.server = Start(t, "updateserver", filepath.Join(e.Dir, "server.log"), nil, e.Bin.Server, st.args...)
	e.awaitServer(t)
	tok, err := os.ReadFile(filepath.Join(e.Data, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	e.Admin = strings.TrimSpace(string(tok))
	e.Root = strings.TrimSpace(e.MustCLI(t, "root", "sha256", "--data", e.Data))
	return e
}

func (e *Env) awaitServer(t testing.TB) {
	t.Helper()
	// This only waits for the server to be up: which certificates are
	// trusted is what the tests check, through the CLI and the agents.
	probe := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	defer probe.CloseIdleConnections()
	Await(t, "server healthy", func() bool {
		resp, err := probe.Get(e.URL + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

// StopServer kills the server (SIGKILL: no clean shutdown).
func (e *Env) StopServer(t testing.TB) { e.server.Kill(t) }

// StartServer starts the server again on the same address and data.
func (e *Env) StartServer(t testing.TB) {
	t.Helper()
	e.server = Start(t, "updateserver", filepath.Join(e.Dir, "server.log"), nil, e.Bin.Server, e.server.Args[1:]...)
	e.awaitServer(t)
}

// CLI runs the updateserver CLI against the server as admin.
func (e *Env) CLI(args ...string) (stdout, stderr string, code int) {
	cmd := exec.Command(e.Bin.Server, args...)
	cmd.Env = append(os.Environ(), "UPDATESERVER_URL="+e.URL, "UPDATESERVER_TOKEN="+e.Admin, "UPDATESERVER_CA_FILE="+e.CAFile)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code = 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		code = -1
	}
	return out.String(), errb.String(), code
}

// MustCLI runs the CLI and fails the test on a non-zero exit.
func (e *Env) MustCLI(t testing.TB, args ...string) string {
	t.Helper()
	out, errs, code := e.CLI(args...)
	if code != 0 {
		t.Fatalf("updateserver %s: exit %d: %s", strings.Join(args, " "), code, errs)
	}
	return out
}

// Health of a release built by Publish.
type Health bool

// Release health.
const (
	Healthy   Health = true
	Unhealthy Health = false
)

// Product is the sample app's product name.
const Product = "sampleapp"

// Publish builds a bundle of the sample app at version (one whose health
// check fails, for Unhealthy) and publishes it on channel stable.
func (e *Env) Publish(t testing.TB, version string, h Health, extra ...string) {
	t.Helper()
	files := map[string]string{}
	if h == Unhealthy {
		files["unhealthy"] = "this release fails its health check\n"
	}
	e.PublishFiles(t, version, files, extra...)
}

// PublishFiles publishes the sample app at version with extra files in its
// payload (e.g. "startup_delay": "2s") and extra publish flags.
func (e *Env) PublishFiles(t testing.TB, version string, extraFiles map[string]string, extra ...string) {
	t.Helper()
	e.PublishBundle(t, version, Bundle{Files: extraFiles}, extra...)
}

// Bundle is what a release of the sample app holds besides the app itself.
type Bundle struct {
	Files      map[string]string // extra payload files
	Migrations map[string]string // e.g. "0001_init.up.sql": "CREATE TABLE ..."
	Hooks      map[string]string // e.g. "post-start": "#!/bin/sh\nexit 1\n"
	Manifest   string            // bundle.toml, if any
	// Product publishes the bundle as another product than the sample
	// app's (Product), e.g. a second product on the same server.
	Product string
}

// PublishBundle publishes the sample app at version with b's extras, on
// channel stable, as product b.Product (default Product).
func (e *Env) PublishBundle(t testing.TB, version string, b Bundle, extra ...string) {
	t.Helper()
	product, dir := Product, filepath.Join(e.Dir, "bundles", version)
	if b.Product != "" && b.Product != Product {
		product, dir = b.Product, filepath.Join(e.Dir, "bundles", b.Product+"-"+version)
	}
	files := filepath.Join(dir, "files")
	if err := os.MkdirAll(files, 0o755); err != nil {
		t.Fatal(err)
	}
	copyFile(t, e.Bin.SampleApp, filepath.Join(files, "sampleapp"), 0o755)
	os.WriteFile(filepath.Join(files, "VERSION"), []byte(version+"\n"), 0o644)
	for name, content := range b.Files {
		os.WriteFile(filepath.Join(files, name), []byte(content), 0o644)
	}
	write := func(sub string, m map[string]string, mode os.FileMode) {
		if len(m) == 0 {
			return
		}
		os.MkdirAll(filepath.Join(dir, sub), 0o755)
		for name, content := range m {
			if err := os.WriteFile(filepath.Join(dir, sub, name), []byte(content), mode); err != nil {
				t.Fatal(err)
			}
		}
	}
	write("migrations", b.Migrations, 0o644)
	write("hooks", b.Hooks, 0o755)
	if b.Manifest != "" {
		os.WriteFile(filepath.Join(dir, "bundle.toml"), []byte(b.Manifest), 0o644)
	}
	args := append([]string{"release", "publish", "--product", product, "--version", version, "--channel", "stable", "--progress", "never"}, extra...)
	e.MustCLI(t, append(args, dir)...)
}

// Site is one site: a real agent process managing a real sample app.
type Site struct {
	env                        *Env
	Name, Client               string
	Dir, Install, Data, Config string
	AppAddr                    string
	agent                      *Proc
	ExtraEnv                   []string
}

// NewSite enrolls and starts an agent for a new site of client.
func (e *Env) NewSite(t testing.TB, name, client string, extraConfig ...string) *Site {
	t.Helper()
	s := e.PrepareSite(t, name, client, extraConfig...)
	s.StartAgent(t)
	Await(t, "site "+name+" checked in", func() bool { return s.Info(t).LastSeen != nil })
	return s
}

// PrepareSite writes a site's agent config (with a fresh enroll token)
// without starting the agent.
// extraConfig lines go at the top level of the config (e.g. a targets_url
// pointing at a mirror).
func (e *Env) PrepareSite(t testing.TB, name, client string, extraConfig ...string) *Site {
	t.Helper()
	s := &Site{env: e, Name: name, Client: client, Dir: filepath.Join(e.Dir, "sites", name)}
	s.Install, s.Data = filepath.Join(s.Dir, "install"), filepath.Join(s.Dir, "data")
	s.Config = filepath.Join(s.Dir, "agent.toml")
	s.AppAddr = freeAddr(t)
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(e.MustCLI(t, "enroll-token", "create", "--client", client))
	pid := filepath.Join(s.Dir, "app.pid")
	if e.CAFile != "" {
		extraConfig = append([]string{fmt.Sprintf("ca_file = %q", e.CAFile)}, extraConfig...)
	}
	cfg := fmt.Sprintf(`server = %q
site = %q
client = %q
product = %q
enroll_token = %q
root_sha256 = %q
install_dir = %q
data_dir = %q
poll_interval = "2s"
%s

[app]
start = ["./sampleapp", "start", "--listen", %q, "--pidfile", %q]
stop = [%q, "stop", "--pidfile", %q]
health_url = "http://%s/health"
health_timeout = "5s"
command_timeout = "20s"
`, e.URL, name, client, Product, token, e.Root, s.Install, s.Data, strings.Join(extraConfig, "\n"), s.AppAddr, pid, e.Bin.SampleApp, pid, s.AppAddr)
	if err := os.WriteFile(s.Config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.stopApp() })
	return s
}

// StartAgent starts the site's agent process.
func (s *Site) StartAgent(t testing.TB) {
	t.Helper()
	s.StartAgentUnder(t)
}

// StartAgentUnder starts the site's agent under a wrapper command (e.g.
// "prlimit", "--fsize=10000000", "--"), or directly without one.
func (s *Site) StartAgentUnder(t testing.TB, wrapper ...string) {
	t.Helper()
	args := []string{"run", "--config", s.Config, "--name", "updateagent-test"}
	bin := s.env.Bin.Agent
	if len(wrapper) > 0 {
		args = append(append(append([]string{}, wrapper[1:]...), bin), args...)
		bin = wrapper[0]
	}
	s.agent = Start(t, "agent "+s.Name, filepath.Join(s.Dir, "agent.log"), s.ExtraEnv, bin, args...)
}

// KillAgent kills the agent with SIGKILL.
func (s *Site) KillAgent(t testing.TB) { s.agent.Kill(t) }

// StopAgent stops the agent with SIGTERM and waits for it.
func (s *Site) StopAgent(t testing.TB) { s.agent.Term(t) }

// Agent is the running agent process.
func (s *Site) Agent() *Proc { return s.agent }

func (s *Site) stopApp() {
	exec.Command(s.env.Bin.SampleApp, "stop", "--pidfile", filepath.Join(s.Dir, "app.pid")).Run()
}

// Info is the server's view of the site.
func (s *Site) Info(t testing.TB) protocol.Site {
	t.Helper()
	var st protocol.Site
	out, errs, code := s.env.CLI("sites", "show", s.Name, "--json")
	if code != 0 {
		if strings.Contains(errs, "not enrolled") {
			return st
		}
		t.Fatalf("sites show %s: %s", s.Name, errs)
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// History is the site's jobs, newest first.
func (s *Site) History(t testing.TB) []protocol.Job {
	t.Helper()
	var jobs []protocol.Job
	if err := json.Unmarshal([]byte(s.env.MustCLI(t, "history", "--site", s.Name, "--json")), &jobs); err != nil {
		t.Fatal(err)
	}
	return jobs
}

// AppVersion asks the running sample app for its health: its version, or
// an error.
func (s *Site) AppVersion() (string, error) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + s.AppAddr + "/health")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("health answered %d: %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return strings.TrimSpace(string(b)), nil
}

// AwaitHealthy waits until the app answers healthy as version and the
// server reports the site on it.
func (s *Site) AwaitHealthy(t testing.TB, version string) {
	t.Helper()
	Await(t, fmt.Sprintf("site %s healthy on %s", s.Name, version), func() bool {
		v, err := s.AppVersion()
		return err == nil && v == version && s.Info(t).InstalledVersion == version
	})
}

// AwaitJob waits until the site's newest job has ended and returns it.
func (s *Site) AwaitJob(t testing.TB) protocol.Job {
	t.Helper()
	var j protocol.Job
	Await(t, "site "+s.Name+" job ended", func() bool {
		h := s.History(t)
		if len(h) == 0 {
			return false
		}
		j = h[0]
		return j.Result != protocol.ResultPending && j.Result != protocol.ResultRunning
	})
	return j
}

// Upgrade assigns version to the site now.
func (s *Site) Upgrade(t testing.TB, version string) {
	t.Helper()
	s.env.MustCLI(t, "upgrade", "--site", s.Name, "--to", version, "--now")
}

// Proc is a started process whose output goes to a log file.
type Proc struct {
	Name string
	Args []string
	Log  string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Start starts a process, logging to logPath; it is killed at test end.
func Start(t testing.TB, name, logPath string, env []string, bin string, args ...string) *Proc {
	t.Helper()
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	// A binary the test just wrote can be "text file busy" for a moment:
	// a process another test forked meanwhile holds a copy of the
	// writer's descriptor until it execs (golang.org/issue/22315).
	var cmd *exec.Cmd
	for end := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		cmd = exec.Command(bin, args...)
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.Env = append(os.Environ(), env...)
		err = cmd.Start()
		if !errors.Is(err, syscall.ETXTBSY) || time.Now().After(end) {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	p := &Proc{Name: name, Args: cmd.Args, Log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("---- %s log (%s) ----\n%s", name, logPath, tail(b, 60))
		}
	})
	return p
}

// Kill sends SIGKILL and waits.
func (p *Proc) Kill(t testing.TB) {
	p.cmd.Process.Kill()
	<-p.done
}

// Term sends SIGTERM and waits (up to a minute).
func (p *Proc) Term(t testing.TB) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(time.Minute):
		t.Fatalf("%s did not stop within a minute of SIGTERM", p.Name)
	}
}

// Wait waits for the process to exit by itself and returns its exit code.
func (p *Proc) Wait(t testing.TB, d time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		t.Fatalf("%s still running after %v", p.Name, d)
	}
	if ee, ok := p.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return 0
}

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Pid is the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Await polls cond until it holds. The deadline only bounds a broken test;
// it is not a performance assertion.
func Await(t testing.TB, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func copyFile(t testing.TB, src, dst string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, mode); err != nil {
		t.Fatal(err)
	}
}

func tail(b []byte, lines int) string {
	s := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(s) > lines {
		s = s[len(s)-lines:]
	}
	return strings.Join(s, "\n")
}

// SHA256File returns a file's hex sha256.
func SHA256File(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
