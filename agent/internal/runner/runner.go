// Package runner is the agent's main loop, what `updateagent run` and the
// OS service run: enroll once, recover an interrupted job, then check in
// (long-polling, so an upgrade support triggers starts at once), run each
// assignment through the engine, and deliver the journal's events, with
// backoff while the server is away.
package runner

import (
	"context"
	"errors"
	"fmt"
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
	CredentialFile = "credential"   // the agent's own credential, 0600
	ContactFile    = "contact.json" // when the server was last reached, for status
	TUFDir         = "tuf"          // trusted TUF metadata
)

// Runner runs one agent.
type Runner struct {
	cfg    *config.Config
	log    *slog.Logger
	api    *agentapi.Client
	fetch  *fetch.Client
	engine *engine.Engine

	wake chan struct{} // new events to send

	lastDrift time.Time // when checkDrift last ran; loop's goroutine only
}

// New prepares a runner; Run does the work.
func New(cfg *config.Config, log *slog.Logger) *Runner {
	return &Runner{cfg: cfg, log: log.With("site", cfg.Site), api: agentapi.New(cfg.Server), wake: make(chan struct{}, 1)}
}

// Run runs until ctx ends. It returns an error only when the agent cannot
// work at all (a config or local problem, such as a ca_file that does not
// load); a server that is away is waited for.
func (r *Runner) Run(ctx context.Context) error {
	tlsCfg, err := tlstrust.ClientConfig(r.cfg.CAFile)
	if err != nil {
		return fmt.Errorf("ca_file: %w: give the PEM file of the CA that signed the server's certificate", err)
	}
	r.api = agentapi.New(r.cfg.Server, agentapi.WithTLS(tlsCfg))
	if r.cfg.InsecureHTTP() {
		r.log.Warn("allow_insecure_http = true: talking plain http:// to a server that is not on loopback; the agent's credential and reports travel in clear (TUF still checks what is installed): use https://",
			"server", r.cfg.Server)
	}
	for _, d := range []string{r.cfg.DataDir, r.cfg.InstallDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	if err := os.Chmod(r.cfg.DataDir, 0o700); err != nil {
		return err
	}
	fc, err := fetch.New(fetch.Config{
		MetadataURL: r.cfg.MetadataURL,
		TargetsURL:  r.cfg.TargetsURL,
		MetadataDir: filepath.Join(r.cfg.DataDir, TUFDir),
		RootSHA256:  r.cfg.RootSHA256,
		TLS:         tlsCfg,
		Log:         r.log,
	})
	if err != nil {
		return err
	}
	r.fetch = fc
	app, err := appctl.New(r.cfg.App, r.cfg.InstallDir, r.log)
	if err != nil {
		return err
	}
	eng, err := engine.Open(ctx, engine.Config{
		Product:        r.cfg.Product,
		AllowDowngrade: r.cfg.AllowDowngrade,
		InstallDir:     r.cfg.InstallDir,
		DataDir:        r.cfg.DataDir,
		KeepReleases:   r.cfg.KeepReleases,
		App:            app,
		HealthOverride: r.healthOverride,
		Database:       r.cfg.Database,
		DriftIgnore:    r.cfg.DriftIgnore,
		Fetcher:        &tufFetcher{c: fc, log: r.log},
		Log:            r.log,
		Failpoint:      os.Getenv(engine.FailpointEnv),
	})
	if err != nil {
		return err
	}
	defer eng.Close()
	r.engine = eng
	if err := eng.Recover(ctx); err != nil {
		return fmt.Errorf("recover the interrupted job: %w", err)
	}
	r.log.Info("agent started", "version", buildinfo.String(), "server", r.cfg.Server, "installed", eng.Status().InstalledVersion)

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.deliverEvents(ctx)
	}()
	r.loop(ctx)
	wg.Wait()
	return nil
}

// loop checks in and runs assignments until ctx ends.
func (r *Runner) loop(ctx context.Context) {
	bo := backoff{min: time.Second, max: r.cfg.PollInterval.Duration}
	var lastLogged time.Time
	for ctx.Err() == nil {
		if err := r.ensureCredential(ctx); err != nil {
			r.logThrottled(&lastLogged, "cannot enroll", err)
			sleep(ctx, bo.next())
			continue
		}
		// On start (lastDrift is zero) and every DriftInterval, before
		// the check-in that reports it.
		if time.Since(r.lastDrift) >= engine.DriftInterval {
			r.checkDrift(ctx)
		}
		st := r.engine.Status()
		wait := jitter(r.cfg.PollInterval.Duration)
		resp, err := r.api.Checkin(ctx, r.checkinRequest(st), wait)
		r.recordContact(err)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if agentapi.IsUnauthorized(err) {
				r.log.Warn("the server refused the agent's credential; enrolling again", "err", err)
				os.Remove(filepath.Join(r.cfg.DataDir, CredentialFile))
				r.api.Credential = ""
			}
			r.logThrottled(&lastLogged, "server unreachable", err)
			sleep(ctx, bo.next())
			continue
		}
		if bo.failures > 0 {
			r.log.Info("server reachable again", "after_failures", bo.failures)
		}
		bo.reset()
		a := resp.Assignment
		if a == nil || (st.LastJob != nil && st.LastJob.ID == a.JobID) {
			// Nothing new. The long-poll already waited; if the server
			// answered early without work, do not spin.
			continue
		}
		if !resp.Window.Open {
			continue
		}
		r.runJob(ctx, *a)
	}
}

func (r *Runner) runJob(ctx context.Context, a protocol.Assignment) {
	log := r.log.With("job", a.JobID, "to", a.Version)
	log.Info("job starting", "from", a.From)
	done := make(chan struct{})
	go func() { // deliver events while the job runs
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
	js, err := r.engine.Run(ctx, a)
	close(done)
	r.notifyEvents()
	if err != nil {
		log.Error("job could not run", "err", err)
		return
	}
	log.Info("job ended", "result", js.Result, "state", js.State)
	r.checkDrift(ctx) // another release may run now
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

// ensureCredential loads the agent's credential, enrolling first if it has
// none.
func (r *Runner) ensureCredential(ctx context.Context) error {
	if r.api.Credential != "" {
		return nil
	}
	path := filepath.Join(r.cfg.DataDir, CredentialFile)
	if b, err := os.ReadFile(path); err == nil {
		r.api.Credential = strings.TrimSpace(string(b))
		return nil
	}
	if r.cfg.EnrollToken == "" {
		return errors.New("the agent has no credential and the config has no enroll_token: create one with updateserver enroll-token create")
	}
	host, _ := os.Hostname()
	resp, err := r.api.Enroll(ctx, protocol.EnrollRequest{Token: r.cfg.EnrollToken, Site: r.cfg.Site, Client: r.cfg.Client, Product: r.cfg.Product, Hostname: host})
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(path, []byte(resp.Credential+"\n"), 0o600); err != nil {
		return fmt.Errorf("save credential: %w", err)
	}
	r.log.Info("enrolled", "site", resp.Site)
	return nil
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
			if r.api.Credential == "" {
				break
			}
			evs, err := r.engine.PendingEvents(ctx, 200)
			if err != nil || len(evs) == 0 {
				break
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
	r.log.Warn(msg, "err", err)
}

// Contact is what status shows about the server.
type Contact struct {
	Reachable bool      `json:"reachable"`
	LastOK    time.Time `json:"last_ok,omitempty"`
	LastError string    `json:"last_error,omitempty"`
	At        time.Time `json:"at"`
}

func (r *Runner) recordContact(err error) {
	c, _ := ReadContact(r.cfg.DataDir)
	c.At = time.Now().UTC()
	if err == nil {
		c.Reachable, c.LastOK, c.LastError = true, c.At, ""
	} else if !errors.Is(err, context.Canceled) {
		c.Reachable, c.LastError = false, err.Error()
	}
	writeJSON(filepath.Join(r.cfg.DataDir, ContactFile), c)
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
