// Package runner is the agent's main loop, what `updateagent run` and the
// OS service run: enroll once, recover an interrupted job, then check in
// (long-polling, so an upgrade support triggers starts at once), run each
// assignment through the engine, and deliver the journal's events, with
// backoff while the server is away. A job the engine could not journal to
// its end is recovered by the running agent, as a restart would. What the
// agent last learnt about the server (reachable or why not, with what to
// do) is kept in ContactFile for `updateagent status`.
package runner

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/dropless/dropless/agent/internal/appctl"
	"github.com/dropless/dropless/agent/internal/config"
	"github.com/dropless/dropless/agent/internal/engine"
	"github.com/dropless/dropless/agent/internal/fetch"
	"github.com/dropless/dropless/pkg/agentapi"
	"github.com/dropless/dropless/pkg/atomicfile"
	"github.com/dropless/dropless/pkg/buildinfo"
	"github.com/dropless/dropless/pkg/bundle"
	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/pkg/tlstrust"
)

// Files in data_dir.
const (
	CredentialFile  = "credential"          // the agent's own credential, 0600
	EnrollTokenFile = "enroll_token.sha256" // sha256 (hex) of the enroll token the credential came from
	ContactFile     = "contact.json"        // when the server was last reached, or why not, for status
	TUFDir          = "tuf"                 // trusted TUF metadata
)

// Runner runs one agent.
type Runner struct {
	cfg    *config.Config
	log    *slog.Logger
	api    *agentapi.Client
	fetch  *fetch.Client
	engine *engine.Engine

	wake chan struct{} // new events to send

	// The loop's goroutine only:
	lastDrift      time.Time // when checkDrift last ran
	recoverPending bool      // a job may be unfinished: Recover before running another
	aheadJob       string    // the waiting job whose bundle was downloaded ahead (tried once)
	refusedLogged  time.Time // when a refused credential was last logged
	// trial is the self-update this process, the new agent binary, is
	// to prove itself for (selfupdate.go).
	trial *trial
	// handover, once set, ends the loop: Run does it with the engine
	// closed.
	handover *handover

	bootMu sync.Mutex // serializes Bootstrap between checkRoot and jobs

	contactMu sync.Mutex // guards contact and ContactFile
	contact   Contact

	// engineConfig, when set (by tests), edits the engine's config
	// before it is opened.
	engineConfig func(*engine.Config)
}

// New prepares a runner; Run does the work.
func New(cfg *config.Config, log *slog.Logger) *Runner {
	return &Runner{cfg: cfg, log: log.With("site", cfg.Site), api: agentapi.New(cfg.Server), wake: make(chan struct{}, 1)}
}

// Run runs until ctx ends. It returns an error only when the agent cannot
// work at all (a config or local problem, such as a ca_file that does not
// load); a server that is away is waited for.
func (r *Runner) Run(ctx context.Context) error {
	// Before any swap: where this process's binary lives.
	if _, err := executable(); err != nil {
		r.log.Warn("cannot find the agent's own executable: self-updates will fail", "err", err)
	}
	for {
		h, err := r.runOnce(ctx)
		if err != nil || h == nil || ctx.Err() != nil {
			return err
		}
		r.handover = nil
		r.handOver(ctx, *h)
		if ctx.Err() != nil {
			return nil
		}
	}
}

// runOnce runs the agent with its engine open until ctx ends, or until a
// self-update needs the engine closed (the handover it returns).
func (r *Runner) runOnce(ctx context.Context) (*handover, error) {
	tlsCfg, err := tlstrust.ClientConfig(r.cfg.CAFile)
	if err != nil {
		return nil, fmt.Errorf("ca_file: %w: give the PEM file of the CA that signed the server's certificate", err)
	}
	r.api = agentapi.New(r.cfg.Server, agentapi.WithTLS(tlsCfg))
	if urls := r.cfg.ServerURLs(); len(urls) > 1 {
		r.api.SetServers(urls)
	}
	if r.cfg.InsecureHTTP() {
		r.log.Warn("allow_insecure_http = true: talking plain http:// to a server that is not on loopback; the agent's credential and reports travel in clear (TUF still checks what is installed): use https://",
			"server", r.cfg.Server)
	}
	for _, d := range []string{r.cfg.DataDir, r.cfg.InstallDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("create %s: %w", d, err)
		}
	}
	if err := os.Chmod(r.cfg.DataDir, 0o700); err != nil {
		return nil, err
	}
	fc, err := fetch.New(fetch.Config{
		MetadataURL: r.cfg.MetadataURL,
		TargetsURL:  r.cfg.TargetsURL,
		MetadataDir: filepath.Join(r.cfg.DataDir, TUFDir),
		RootSHA256:  r.cfg.RootSHA256,
		TLS:         tlsCfg,
		Log:         r.log,
		Server:      r.tufServer(),
		Unreachable: r.serverUnreachable,
	})
	if err != nil {
		return nil, err
	}
	r.fetch = fc
	app, err := appctl.New(r.cfg.App, r.cfg.InstallDir, r.log)
	if err != nil {
		return nil, err
	}
	ecfg := EngineConfig(r.cfg, app, &tufFetcher{c: fc, log: r.log, bootMu: &r.bootMu}, r.log)
	ecfg.HealthOverride = r.healthOverride
	if r.engineConfig != nil {
		r.engineConfig(&ecfg)
	}
	if err := r.prepareJournal(ctx); err != nil {
		return nil, err
	}
	eng, err := engine.Open(ctx, ecfg)
	if err != nil {
		return nil, err
	}
	defer eng.Close()
	r.engine = eng
	r.contact, _ = ReadContact(r.cfg.DataDir)
	if err := r.loadCredential(); err != nil {
		return nil, err
	}
	r.log.Info("agent started", "version", buildinfo.String(), "server", r.cfg.Server, "installed", eng.Status().InstalledVersion)
	// An unfinished self-update before anything else.
	if h, err := r.recoverSelfUpdate(ctx); err != nil || h != nil {
		return h, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		r.deliverEvents(ctx)
	}()
	go func() {
		defer wg.Done()
		r.checkRoot(ctx)
	}()
	// An interrupted job first: the loop runs nothing else until Recover
	// succeeded, and retries it while the journal cannot be written.
	r.recoverPending = true
	if r.trial != nil {
		r.proveHealthy(ctx)
	}
	r.loop(ctx)
	cancel()
	wg.Wait()
	return r.handover, nil
}

// recoverBackoff paces Recover while the journal cannot be written.
var recoverBackoff = backoff{min: time.Second, max: time.Minute}

// loop checks in and runs assignments until ctx ends.
func (r *Runner) loop(ctx context.Context) {
	bo := backoff{min: time.Second, max: r.cfg.PollInterval.Duration}
	rbo := recoverBackoff
	var lastLogged, lastRecoverLogged time.Time
	for ctx.Err() == nil && r.handover == nil {
		start := time.Now()
		wait := jitter(r.cfg.PollInterval.Duration)
		if r.recoverPending {
			if err := r.recover(ctx); err != nil {
				if ctx.Err() != nil {
					return
				}
				// Check in meanwhile (the server sees where the job
				// stands), then try again after the backoff.
				r.logThrottled(&lastRecoverLogged, "cannot recover the unfinished job yet; trying again", err)
				wait = rbo.next()
			} else {
				rbo.reset()
			}
		}
		if err := r.ensureCredential(ctx); err != nil {
			r.recordContact(err, true)
			r.logThrottled(&lastLogged, "cannot enroll", err)
			sleep(ctx, min(bo.next(), max(wait, time.Second)))
			continue
		}
		// On start (lastDrift is zero) and every DriftInterval, before
		// the check-in that reports it.
		if !r.recoverPending && time.Since(r.lastDrift) >= engine.DriftInterval {
			r.checkDrift(ctx)
		}
		st := r.engine.Status()
		server := r.api.Server()
		resp, err := r.api.Checkin(ctx, r.checkinRequest(st), wait)
		r.recordContact(err, false)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if next := r.api.Server(); next != server {
				r.log.Warn("server not answering: moving on to the next one", "server", server, "next", next, "err", err)
			}
			if agentapi.IsUnauthorized(err) {
				r.credentialRefused(ctx, err)
			} else {
				r.logThrottled(&lastLogged, "server unreachable", err)
			}
			sleep(ctx, bo.next())
			continue
		}
		if bo.failures > 0 {
			r.log.Info("server reachable again", "after_failures", bo.failures)
		}
		bo.reset()
		if r.recoverPending {
			// No new job before the unfinished one is recovered; do
			// not spin when the server answered before wait.
			sleep(ctx, wait-time.Since(start))
			continue
		}
		a := resp.Assignment
		if a == nil || (st.LastJob != nil && st.LastJob.ID == a.JobID) {
			// Nothing new. The long-poll already waited; if the server
			// answered early without work, do not spin.
			continue
		}
		if !resp.Window.Open {
			r.downloadAhead(ctx, *a)
			continue
		}
		r.runJob(ctx, *a)
	}
}

// downloadAhead fetches the bundle of a job that waits for its window,
// once per job (engine.Prefetch): a failure is only logged, and the job
// downloads its bundle itself when the window opens.
func (r *Runner) downloadAhead(ctx context.Context, a protocol.Assignment) {
	if r.aheadJob == a.JobID || a.Product == engine.AgentProduct {
		return
	}
	r.aheadJob = a.JobID
	if err := r.engine.Prefetch(ctx, a); err != nil && ctx.Err() == nil {
		r.log.Warn("downloading ahead of the window failed; the job downloads its bundle when the window opens", "job", a.JobID, "err", err)
	}
}

func (r *Runner) runJob(ctx context.Context, a protocol.Assignment) {
	log := r.log.With("job", a.JobID, "to", a.Version)
	log.Info("job starting", "from", a.From, "product", a.Product)
	if a.Product == engine.AgentProduct {
		r.handover = r.selfUpdate(ctx, a)
		return
	}
	stop := r.pumpEvents() // while the job runs
	js, err := r.engine.Run(ctx, a)
	stop()
	if err != nil {
		if ctx.Err() == nil {
			// A journal write failed (the job stopped where the
			// journal shows it), or another job was unfinished:
			// recover it as a restart would, before anything else.
			log.Error("job stopped before its end; the agent recovers it", "err", err)
			r.recoverPending = true
		}
		return
	}
	log.Info("job ended", "result", js.Result, "state", js.State)
	r.checkDrift(ctx) // another release may run now
}

// pumpEvents nudges event delivery every 250ms until the returned stop
// is called; stop nudges it once more, for the last events.
func (r *Runner) pumpEvents() (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				r.notifyEvents()
			}
		}
	}()
	return func() {
		close(done)
		r.notifyEvents()
	}
}

// recover asks the engine to finish or roll back an unfinished job (it
// does nothing when there is none), and clears recoverPending once that
// worked.
func (r *Runner) recover(ctx context.Context) error {
	stop := r.pumpEvents() // a retried job has events to deliver as it runs
	unfinished := r.engine.Status().CurrentJob
	err := r.engine.Recover(ctx)
	stop()
	if err != nil {
		return err
	}
	if st := r.engine.Status(); unfinished != nil && st.CurrentJob == nil && st.LastJob != nil {
		r.log.Info("the unfinished job is recovered", "job", st.LastJob.ID, "result", st.LastJob.Result)
	}
	r.recoverPending = false
	r.checkDrift(ctx)
	return nil
}

// checkDrift asks the engine for the site's drift (cheap: files are hashed
// again only when they changed); check-ins report it. Between jobs only:
// the loop runs jobs and drift checks one after the other.
func (r *Runner) checkDrift(ctx context.Context) {
	r.lastDrift = time.Now()
	// The engine logs the drift when it changes.
	if _, err := r.engine.CheckDrift(ctx); err != nil && ctx.Err() == nil {
		r.log.Warn("drift check incomplete", "err", err)
	}
}

// healthOverride is the health check of a release whose bundle.toml has a
// [health] table: the [app] config with the bundle's fields in place of
// its health_url, health_cmd and health_timeout.
func (r *Runner) healthOverride(h bundle.Health) (engine.HealthChecker, error) {
	app := r.cfg.App
	switch {
	case h.URL != "":
		app.HealthURL, app.HealthCmd = h.URL, nil
	case len(h.Cmd) > 0:
		app.HealthURL, app.HealthCmd = "", h.Cmd
	}
	if d, ok := h.TimeoutDuration(); ok {
		app.HealthTimeout.Duration = d
	}
	return appctl.New(app, r.cfg.InstallDir, r.log)
}

func (r *Runner) checkinRequest(st engine.Status) protocol.CheckinRequest {
	host, _ := os.Hostname()
	req := protocol.CheckinRequest{
		InstalledVersion: st.InstalledVersion,
		AgentVersion:     buildinfo.String(),
		OS:               runtime.GOOS,
		Arch:             runtime.GOARCH,
		Hostname:         host,
		State:            st.State,
	}
	switch {
	case st.CurrentJob != nil:
		req.Job = st.CurrentJob
	case st.LastJob != nil:
		req.Job = st.LastJob
	}
	req.Drift = st.Drift
	if req.State == "" {
		req.State = protocol.StateIdle
	}
	return req
}

// loadCredential reads the agent's credential, if it has one. A
// credential from before the agent remembered which enroll token it came
// from is taken to come from the enroll_token in the config now.
func (r *Runner) loadCredential() error {
	cred, err := ReadCredential(r.cfg.DataDir)
	if err != nil || cred == "" {
		return err
	}
	r.api.SetCredential(cred)
	if _, err := os.Stat(filepath.Join(r.cfg.DataDir, EnrollTokenFile)); errors.Is(err, fs.ErrNotExist) && r.cfg.EnrollToken != "" {
		if err := r.rememberEnrollToken(); err != nil {
			r.log.Warn("cannot record which enroll token was used", "err", err)
		}
	}
	return nil
}

// ReadCredential returns the agent's credential kept in dataDir, or ""
// when it has none yet (it has not enrolled).
func ReadCredential(dataDir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, CredentialFile))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read the agent's credential: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// ensureCredential enrolls when the agent has no credential yet.
func (r *Runner) ensureCredential(ctx context.Context) error {
	if r.api.CurrentCredential() != "" {
		return nil
	}
	if r.cfg.EnrollToken == "" {
		return errNoEnrollToken
	}
	return r.enroll(ctx)
}

var errNoEnrollToken = errors.New("the agent has no credential and the config has no enroll_token: ask support for an enroll token (updateserver enroll-token create) and put it in enroll_token")

// enroll exchanges the config's enroll token for a credential, keeps the
// credential and remembers which token it used.
func (r *Runner) enroll(ctx context.Context) error {
	host, _ := os.Hostname()
	// Same server and transport; r.api gets the credential once it is saved.
	server := r.api.Server()
	api := &agentapi.Client{BaseURL: server, HTTP: r.api.HTTP, Timeout: r.api.Timeout}
	resp, err := api.Enroll(ctx, protocol.EnrollRequest{Token: r.cfg.EnrollToken, Site: r.cfg.Site, Client: r.cfg.Client, Product: r.cfg.Product, Hostname: host})
	if err != nil {
		if !agentapi.IsUnauthorized(err) {
			r.serverUnreachable(server)
		}
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(r.cfg.DataDir, CredentialFile), []byte(resp.Credential+"\n"), 0o600); err != nil {
		return fmt.Errorf("save credential: %w", err)
	}
	r.api.SetCredential(resp.Credential)
	if err := r.rememberEnrollToken(); err != nil {
		r.log.Warn("cannot record which enroll token was used", "err", err)
	}
	r.log.Info("enrolled; enroll_token is no longer needed in the config and can be removed")
	return nil
}

// tokenHash is how the data dir remembers an enroll token: its sha256.
func tokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

func (r *Runner) rememberEnrollToken() error {
	return atomicfile.WriteFile(filepath.Join(r.cfg.DataDir, EnrollTokenFile), []byte(tokenHash(r.cfg.EnrollToken)+"\n"), 0o600)
}

// newEnrollToken reports whether the config holds an enroll token other
// than the one the credential came from.
func (r *Runner) newEnrollToken() bool {
	if r.cfg.EnrollToken == "" {
		return false
	}
	b, err := os.ReadFile(filepath.Join(r.cfg.DataDir, EnrollTokenFile))
	return err != nil || strings.TrimSpace(string(b)) != tokenHash(r.cfg.EnrollToken)
}

// credentialRefused handles a check-in the server answered 401. The
// credential is kept: a proxy or a server having a bad moment must not
// orphan the site. With a new enroll token in the config the agent
// enrolls again; without one it keeps trying the credential it has.
func (r *Runner) credentialRefused(ctx context.Context, err error) {
	if !r.newEnrollToken() {
		r.logThrottled(&r.refusedLogged, "credential refused: the server refused the agent's credential; keeping it and trying again (to enroll again, put a new enroll token in enroll_token)", err)
		return
	}
	r.log.Warn("credential refused: enrolling again with the new enroll_token in the config", "err", err)
	if eerr := r.enroll(ctx); eerr != nil {
		r.recordContact(eerr, true)
		r.log.Warn("cannot enroll again with the new enroll_token; keeping the old credential", "err", eerr)
	}
}

func (r *Runner) notifyEvents() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// deliverEvents sends the journal's undelivered events in batches until
// ctx ends, retrying with backoff; each is marked delivered only once the
// server stored it, so none is lost and the server drops repeats.
func (r *Runner) deliverEvents(ctx context.Context) {
	bo := backoff{min: time.Second, max: time.Minute}
	var lastLogged time.Time
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		case <-t.C:
		}
		for ctx.Err() == nil {
			if r.api.CurrentCredential() == "" {
				break
			}
			evs, err := r.engine.PendingEvents(ctx, 200)
			if err != nil || len(evs) == 0 {
				break
			}
			if evs, err = r.deliverReports(ctx, evs); err != nil {
				r.logThrottled(&lastLogged, "offline job reports not delivered yet", err)
				sleep(ctx, bo.next())
				continue
			}
			if len(evs) == 0 {
				break // reports only; the rest on the next wake or tick
			}
			if _, err := r.api.SendEvents(ctx, evs); err != nil {
				r.logThrottled(&lastLogged, "events not delivered yet", err)
				sleep(ctx, bo.next())
				continue
			}
			bo.reset()
			if err := r.engine.MarkDelivered(ctx, evs); err != nil {
				r.log.Error("marking events delivered", "err", err)
				break
			}
		}
	}
}

// logThrottled logs a recurring failure at most once a minute.
func (r *Runner) logThrottled(last *time.Time, msg string, err error) {
	if time.Since(*last) < time.Minute {
		return
	}
	*last = time.Now()
	if err == nil {
		r.log.Warn(msg)
		return
	}
	r.log.Warn(msg, "err", err)
}

// checkRoot checks, once at start and without holding up check-ins, that
// root_sha256 pins the server's root: with no trusted root yet it
// bootstraps it (fetching 1.root.json and comparing its sha256). A
// mismatch is logged and shown in status with what to do; while the
// server cannot be reached it tries again with backoff.
func (r *Runner) checkRoot(ctx context.Context) {
	bo := backoff{min: time.Second, max: 5 * time.Minute}
	var lastLogged time.Time
	for ctx.Err() == nil {
		r.bootMu.Lock()
		err := r.fetch.Bootstrap(ctx)
		r.bootMu.Unlock()
		switch {
		case err == nil:
			r.editContact(func(c *Contact) { c.RootError = "" })
			return
		case ctx.Err() != nil:
			return
		case errors.Is(err, fetch.ErrRootPin):
			msg := r.rootMismatch(err)
			r.logThrottled(&lastLogged, msg, nil)
			r.editContact(func(c *Contact) { c.RootError = msg })
			// The server's root may be put right: look again, slowly.
			sleep(ctx, 5*time.Minute)
			continue
		default:
			r.logThrottled(&lastLogged, "cannot check root_sha256 against the server's root yet; trying again", err)
		}
		sleep(ctx, bo.next())
	}
}

// rootMismatch says that root_sha256 does not pin the server's root,
// naming the sha256 of the root the fetcher refused.
func (r *Runner) rootMismatch(pinErr error) string {
	fix := "fix root_sha256 in the config (the server prints it: updateserver root sha256)"
	var fe *fetch.Error
	if errors.As(pinErr, &fe) && fe.RootSHA256 != "" {
		return fmt.Sprintf("the server's root.json has sha256 %s, the config pins %s: %s", fe.RootSHA256, r.cfg.RootSHA256, fix)
	}
	return fmt.Sprintf("the server's root.json does not match the config's root_sha256 %s (%v): %s", r.cfg.RootSHA256, pinErr, fix)
}

// backoff is exponential with jitter, between min and max.
type backoff struct {
	min, max time.Duration
	failures int
}

func (b *backoff) next() time.Duration {
	b.failures++
	d := b.min << min(b.failures-1, 16)
	if d > b.max || d <= 0 {
		d = b.max
	}
	return jitter(d)
}

func (b *backoff) reset() { b.failures = 0 }

// jitter spreads d by ±20% so a fleet does not call in lockstep.
func jitter(d time.Duration) time.Duration {
	return d - d/5 + time.Duration(rand.Int64N(int64(d/5)*2+1))
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// tufServer is where the TUF repository is read from with several
// servers: the one the agent talks to now (nil: the configured URLs).
func (r *Runner) tufServer() func() string {
	if !r.cfg.TUFFollowsServer() {
		return nil
	}
	return func() string { return r.api.Server() }
}

// serverUnreachable moves the agent on to its next server (with several)
// when server did not answer.
func (r *Runner) serverUnreachable(server string) {
	if next := r.api.Failover(server); next != server {
		r.log.Warn("server not answering: moving on to the next one", "server", server, "next", next)
	}
}
