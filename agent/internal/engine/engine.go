package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/dropless/dropless/agent/internal/appctl"
	"github.com/dropless/dropless/agent/internal/config"
	"github.com/dropless/dropless/agent/internal/drift"
	"github.com/dropless/dropless/pkg/bundle"
	"github.com/dropless/dropless/pkg/filelock"
	"github.com/dropless/dropless/pkg/protocol"
)

// FailpointEnv is the environment variable that names a state at which the
// agent exits at once (see Config.Failpoint). Crash tests set it.
const FailpointEnv = "UPDATEAGENT_FAILPOINT"

// FailpointExitCode is the exit code of a process stopped by a failpoint.
const FailpointExitCode = 3

// Fetcher gets a bundle through the agent's update channel. It is
// implemented by agent/internal/fetch (a TUF client); the engine trusts
// nothing about a bundle but what the Fetcher returns.
type Fetcher interface {
	// Target returns the verified metadata of the TUF target at path: its
	// length, SHA-256 (hex) and custom metadata.
	Target(ctx context.Context, path string) (length int64, sha256hex string, custom protocol.TargetCustom, err error)
	// Download writes the verified target at path to dst, or returns an
	// error and leaves nothing at dst.
	Download(ctx context.Context, path, dst string) error
}

// Config configures an Engine.
type Config struct {
	// Product is the agent's configured product: the only product whose
	// signed targets it installs, whatever an assignment says (see
	// trust.go). Required.
	Product string
	// AllowDowngrade is the config's allow_downgrade: an older version is
	// installed only where it is true and the assignment asks for it.
	AllowDowngrade bool
	// InstallDir and DataDir are the agent's install_dir and data_dir
	// (absolute): releases and current live in InstallDir, the journal
	// and downloads in DataDir.
	InstallDir, DataDir string
	// KeepReleases is how many release directories stay installed, the
	// running one and the rollback target included. 0 means the config
	// default (3); at least 2.
	KeepReleases int
	// App stops, starts and health-checks the application. Required.
	App appctl.Controller
	// HealthOverride, when set, gives the health check of a release
	// whose bundle.toml has a [health] table (h has at least one field
	// set): the runner builds it from the [app] config with h's fields
	// replacing health_url, health_cmd or health_timeout. nil: [health]
	// tables are ignored (and the log says so) and App.Healthy checks
	// every release.
	HealthOverride func(h bundle.Health) (HealthChecker, error)
	// Database is the agent's [database]: where bundles' migrations
	// apply. nil: no database steps, and a bundle with migrations is
	// refused in preflight.
	Database *config.Database
	// Data are the app's other files and directories ([[data]], absolute
	// paths): snapshotted in backing_up, put back exactly on rollback
	// (see data.go).
	Data []string
	// DriftIgnore lists patterns of paths in a release directory that are
	// not drift (files the application itself writes there, e.g. "*.log"
	// or "logs/"); see drift.Ignored for the syntax.
	DriftIgnore []string
	// Fetcher gets bundles. Required by Run; Recover and Status do not
	// need it.
	Fetcher Fetcher
	// Log receives the engine's log; nil discards it.
	Log *slog.Logger
	// Failpoint, from the environment variable UPDATEAGENT_FAILPOINT
	// (FailpointEnv), names a state (protocol.State*): when a job enters
	// it, the process exits at once with FailpointExitCode, right after
	// the transition is journaled and synced and before the state's
	// action, without cleanup or deferred calls. Crash tests use it.
	Failpoint string
	// Now returns the time for the journal; nil means time.Now.
	Now func() time.Time
	// JournalFault, when set, is called before each write to the journal
	// with what is about to be written (e.g. "job J to staging"); an
	// error fails that write as a full disk would. Tests use it to check
	// that the agent gets over a journal it could not write for a while.
	JournalFault func(what string) error
}

func (c *Config) validate() error {
	for key, v := range map[string]string{"InstallDir": c.InstallDir, "DataDir": c.DataDir} {
		if v == "" || !filepath.IsAbs(v) {
			return fmt.Errorf("engine config: %s %q must be an absolute path", key, v)
		}
	}
	if c.Product == "" {
		return errors.New("engine config: Product is empty (the agent's configured product)")
	}
	if filepath.Clean(c.InstallDir) == filepath.Clean(c.DataDir) {
		return errors.New("engine config: DataDir must differ from InstallDir")
	}
	if c.KeepReleases == 0 {
		c.KeepReleases = config.DefaultKeepReleases
	}
	if c.KeepReleases < 2 {
		return fmt.Errorf("engine config: KeepReleases %d: keep at least 2 (the running release and the one to roll back to)", c.KeepReleases)
	}
	if c.App == nil {
		return errors.New("engine config: App is nil")
	}
	if c.Database != nil && (c.Database.Driver == "" || c.Database.DSN == "") {
		return errors.New("engine config: Database needs a driver and a dsn")
	}
	for _, p := range c.Data {
		if !filepath.IsAbs(p) {
			return fmt.Errorf("engine config: Data path %q must be absolute", p)
		}
	}
	if err := drift.ValidateIgnore(c.DriftIgnore); err != nil {
		return fmt.Errorf("engine config: %w", err)
	}
	if c.Failpoint != "" {
		if _, ok := parseState(c.Failpoint); !ok {
			return fmt.Errorf("engine config: failpoint %q (%s) is not a state name", c.Failpoint, FailpointEnv)
		}
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// HealthChecker is a health check: appctl.Controller's Healthy.
type HealthChecker interface {
	Healthy(ctx context.Context) error
}

// Engine runs upgrade jobs on one site and keeps their journal.
type Engine struct {
	cfg  Config
	log  *slog.Logger
	j    *journal
	lock *os.File // <data_dir>/engine.lock, held while open

	// runMu is held by Run and Recover: one job at a time.
	runMu sync.Mutex

	mu     sync.Mutex // guards status
	status Status

	drift driftCache // CheckDrift's; runMu must be held

	closeOnce sync.Once
	closeErr  error
}

// Open opens (creating it if needed) the journal at <DataDir>/journal.db
// and returns the engine. When the journal holds an unfinished job, call
// Recover before Run.
func Open(ctx context.Context, cfg Config) (*Engine, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("open engine: %w", err)
	}
	// One engine per data dir: a second agent process on it (a second
	// `updateagent run --config` while the service runs) must not recover
	// or roll back a job the first one is running.
	lockPath := filepath.Join(cfg.DataDir, lockName)
	lock, err := filelock.Lock(lockPath)
	if errors.Is(err, filelock.ErrLocked) {
		return nil, fmt.Errorf("open engine: another agent process uses %s (stop the updateagent service first): %w", cfg.DataDir, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("open engine: %w", err)
	}
	j, err := openJournal(ctx, filepath.Join(cfg.DataDir, JournalName), cfg.Now, cfg.JournalFault)
	if err != nil {
		lock.Close()
		return nil, err
	}
	e := &Engine{cfg: cfg, log: cfg.Log, j: j, lock: lock}
	if cfg.Failpoint != "" {
		e.log.Warn("failpoint set: the agent exits when a job enters this state", "failpoint", cfg.Failpoint, "env", FailpointEnv)
	}
	if err := e.refresh(ctx); err != nil {
		j.close()
		lock.Close()
		return nil, err
	}
	return e, nil
}

// lockName is the lock file in the data dir, held by an open Engine.
const lockName = "engine.lock"

// ErrLocked is returned by Open while another process has the data dir's
// engine open.
var ErrLocked = errors.New("data dir in use")

// Close closes the journal and releases the data dir. Calling it again
// does nothing.
func (e *Engine) Close() error {
	e.closeOnce.Do(func() {
		e.closeErr = e.j.close()
		e.lock.Close()
	})
	return e.closeErr
}

// Status returns the site's status as of the last journal change. It is
// safe to call while a job runs.
func (e *Engine) Status() Status {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.status
}

// refresh re-reads the status from the journal.
func (e *Engine) refresh(ctx context.Context) error {
	st, err := e.j.status(context.WithoutCancel(ctx))
	if err != nil {
		return err
	}
	e.mu.Lock()
	e.status = st
	e.mu.Unlock()
	return nil
}

// PendingEvents returns up to limit events not yet delivered to the
// server, oldest first.
func (e *Engine) PendingEvents(ctx context.Context, limit int) ([]protocol.Event, error) {
	if limit <= 0 {
		limit = 100
	}
	return e.j.pending(ctx, limit)
}

// MarkDelivered records that the server stored evs (by job and seq); they
// are not returned by PendingEvents again.
func (e *Engine) MarkDelivered(ctx context.Context, evs []protocol.Event) error {
	return e.j.markDelivered(ctx, evs)
}

// Events returns every event of one job, by seq, delivered or not.
func (e *Engine) Events(ctx context.Context, jobID string) ([]protocol.Event, error) {
	return e.j.events(ctx, jobID)
}

// enter journals a transition of jb (the job row, its event and the site
// facts, in one synced transaction), then hits the failpoint. Every step's
// action runs only after enter returned: journal before side effects.
func (e *Engine) enter(ctx context.Context, jb *job, c change) error {
	// WithoutCancel: a transition already decided is written even if the
	// agent is shutting down.
	if err := e.j.transition(context.WithoutCancel(ctx), jb.rec, c); err != nil {
		jb.log.Error("the journal could not be written: the job stops here until it can be (Recover takes it up)", "state", jb.rec.State.String(), "next", c.state.String(), "err", err)
		return fmt.Errorf("%w: %w", ErrJournal, err)
	}
	jb.log.Info("job "+c.state.String(), "seq", jb.rec.Seq, "message", c.message)
	if err := e.refresh(ctx); err != nil {
		jb.log.Warn("read status", "err", err)
	}
	e.failpoint(c.state)
	return nil
}

// failpoint exits the process, at once and without cleanup, when the
// configured failpoint names s.
func (e *Engine) failpoint(s state) {
	if e.cfg.Failpoint != "" && e.cfg.Failpoint == s.String() {
		e.log.Warn("failpoint: exiting", "state", s.String())
		os.Exit(FailpointExitCode)
	}
}

// Job returns one job as the journal records it: its status (from, to,
// state, result) and its TUF target.
func (e *Engine) Job(ctx context.Context, id string) (protocol.JobStatus, string, error) {
	rec, err := e.j.job(ctx, id)
	if err != nil {
		return protocol.JobStatus{}, "", fmt.Errorf("job %s: %w", id, err)
	}
	return rec.status(), rec.Target, nil
}
