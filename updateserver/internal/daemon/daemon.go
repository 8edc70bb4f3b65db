// Package daemon assembles the update server from its parts: the data
// directory (store, keys, TUF targets, staged uploads) and its lock,
// first-start initialisation, the HTTP(S) server with its reloading
// certificate and the background re-signer, and runs them until its
// context ends.
package daemon

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/dropless/dropless/pkg/atomicfile"
	"github.com/dropless/dropless/pkg/bundle"
	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/api"
	"github.com/dropless/dropless/updateserver/internal/bus"
	"github.com/dropless/dropless/updateserver/internal/fleet"
	"github.com/dropless/dropless/updateserver/internal/lease"
	"github.com/dropless/dropless/updateserver/internal/metrics"
	"github.com/dropless/dropless/updateserver/internal/notify"
	"github.com/dropless/dropless/updateserver/internal/publish"
	"github.com/dropless/dropless/updateserver/internal/store"
	"github.com/dropless/dropless/updateserver/internal/tufrepo"
)

// Files and directories inside the data directory.
const (
	DBFile         = "updateserver.db"
	AdminTokenFile = "admin.token"
	RootFile       = "root.json"
	KeysDir        = "keys"
	TargetsDir     = "targets"
	UploadsDir     = "uploads"
)

// Config is how the server is run.
type Config struct {
	DataDir string
	// Store is where the state is: empty for the SQLite file in DataDir,
	// or a postgres:// URL (--store).
	Store         string
	Listen        string
	MaxBundleSize int64
	// DeltaBases is publish.Publisher.DeltaBases (0: the default, negative: none).
	DeltaBases      int
	Expiry          tufrepo.Expiry
	RefreshInterval time.Duration
	// PollInterval is what agents are told to wait between check-ins.
	PollInterval time.Duration
	// JobTimeout fails a job without progress for this long.
	JobTimeout time.Duration
	// ReadHeaderTimeout bounds how long a client may take to send its
	// request headers (slowloris); 0 means 10s.
	ReadHeaderTimeout time.Duration
	// TLSCert and TLSKey are PEM files: with both the server serves HTTPS
	// only, and reads the files again when they change.
	TLSCert, TLSKey string
	Log             *slog.Logger
	// MetricsPublic serves /metrics without a token (serve
	// --metrics-public); otherwise Prometheus sends an operator token.
	MetricsPublic bool
	// WrapHandler, when set, wraps the HTTP handler: tests check every
	// request and answer against the API description with it (spectest).
	WrapHandler func(http.Handler) http.Handler
}

// StorePath is what store.Open takes: the --store URL, or the SQLite file
// in the data directory.
func (c Config) StorePath() string {
	if c.Store != "" {
		return c.Store
	}
	return filepath.Join(c.DataDir, DBFile)
}

// Defaults.
const (
	DefaultMaxBundleSize = 16 << 30
	DefaultPollInterval  = 30 * time.Second
	DefaultJobTimeout    = 30 * time.Minute
)

// Validate checks the config and names the bad setting.
func (c Config) Validate() error {
	if c.DataDir == "" {
		return errors.New("--data: give the data directory")
	}
	if c.Store != "" && !store.IsPostgresURL(c.Store) {
		return errors.New("--store: give a postgres://user:password@host:5432/db URL, or leave it out for the SQLite store in --data")
	}
	if c.MaxBundleSize <= 0 {
		return errors.New("--max-bundle-size must be positive")
	}
	if c.JobTimeout <= 0 {
		return errors.New("--job-timeout must be positive")
	}
	if c.PollInterval < time.Second {
		return errors.New("--poll-interval must be at least 1s")
	}
	if c.RefreshInterval <= 0 {
		return errors.New("--refresh-interval must be positive")
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("--tls-cert and --tls-key go together: give both for HTTPS, or neither")
	}
	return c.Expiry.Validate()
}

// Daemon is an opened, initialised server.
type Daemon struct {
	cfg       Config
	Store     *store.Store
	Publisher *publish.Publisher
	Fleet     *fleet.Fleet
	Metrics   *metrics.Metrics
	// Webhooks delivers the webhook outbox.
	Webhooks *notify.Sender
	// Leases runs the background jobs that must run once across
	// replicas on the replica holding their lease (always this one on
	// SQLite).
	Leases *lease.Runner
	// Bus carries wake-ups between replicas (bus.Local alone on SQLite).
	Bus   bus.Bus
	log   *slog.Logger
	ln    net.Listener
	lock  *dirLock
	certs *certReloader // nil: plain HTTP
}

// Open opens the data directory, initialising it on first use: keys, the
// TUF repository's first metadata, DIR/root.json and an admin token in
// DIR/admin.token. Initialisation is idempotent: a start interrupted
// half-way completes on the next.
//
// Before it creates anything it loads the TLS certificate (if configured)
// and binds cfg.Listen (if not ""), so that a bad certificate or an
// address in use leaves no half-made data dir behind. It then locks the
// data dir for the life of the Daemon (another process holding it is an
// error naming its pid) and removes what killed uploads left in staging.
func Open(ctx context.Context, cfg Config) (_ *Daemon, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	d := &Daemon{cfg: cfg, log: log}
	defer func() {
		if err != nil {
			d.release()
		}
	}()
	if cfg.TLSCert != "" {
		if d.certs, err = newCertReloader(cfg.TLSCert, cfg.TLSKey, log); err != nil {
			return nil, err
		}
	}
	if cfg.Listen != "" {
		if err := d.Listen(); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	// On PostgreSQL several replicas share the data directory (the
	// store's leases and write lock keep them apart); on SQLite it is
	// one server's.
	if !store.IsPostgresURL(cfg.Store) {
		if d.lock, err = lockDataDir(cfg.DataDir); err != nil {
			return nil, err
		}
	}
	for _, dir := range []string{filepath.Join(cfg.DataDir, TargetsDir), filepath.Join(cfg.DataDir, UploadsDir)} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create data dir: %w", err)
		}
	}
	st, err := store.Open(ctx, cfg.StorePath())
	if err != nil {
		return nil, err
	}
	d.Store = st
	d.Leases, d.Bus = lease.Always(), bus.Local{}
	if st.Shared() {
		d.Leases = &lease.Runner{Store: st, Holder: lease.Holder(), Log: log}
		d.Bus = &bus.Postgres{DSN: st.DSN, Log: log}
	}
	// The other replicas' caches hear of the changes made here.
	st.SetBus(d.Bus)
	d.Publisher = &publish.Publisher{
		Store:      st,
		Repo:       tufrepo.Repo{Keys: tufrepo.KeyStore{Dir: filepath.Join(cfg.DataDir, KeysDir)}, Expiry: cfg.Expiry},
		TargetsDir: filepath.Join(cfg.DataDir, TargetsDir),
		UploadsDir: filepath.Join(cfg.DataDir, UploadsDir),
		Limits:     bundle.DefaultLimits(),
		MaxUpload:  cfg.MaxBundleSize,
		DeltaBases: cfg.DeltaBases,
		Log:        log,
	}
	d.Fleet = &fleet.Fleet{Store: st, Log: log, PollInterval: cfg.PollInterval, JobTimeout: cfg.JobTimeout, Outbox: notify.JobOutbox, RolloutOutbox: notify.RolloutOutbox, Bus: d.Bus}
	d.Metrics = metrics.New(st, d.Fleet.OnlineSince, log)
	d.Metrics.Leases(d.Leases.Held)
	d.Webhooks = &notify.Sender{Store: st, Log: log, Attempted: d.Metrics.WebhookAttempt}
	d.Fleet.RolloutsChanged = d.Webhooks.Wake
	// Sites that follow a channel react to its releases; the webhook
	// sender delivers the events the change committed.
	d.Publisher.Subscribe(func(c publish.ReleaseChange) {
		d.Fleet.ReleaseChanged(c.Product)
		d.Webhooks.Wake()
		// The follower and the webhook sender may run on another
		// replica. Sent after the commit: a replica that dies in between
		// leaves the change to the follower's next catch-up pass.
		if err := d.Bus.Send(context.WithoutCancel(ctx), bus.Msg{Topic: bus.Release, Payload: c.Product}); err != nil {
			log.Warn("telling the other replicas about a release change failed", "err", err)
		}
	})
	if err := d.init(ctx); err != nil {
		return nil, err
	}
	if st.Shared() {
		// Another replica may be receiving an upload into the shared
		// staging area now: leftovers wait for the leased cleaner
		// (cleanUploads), which removes them after a day.
		return d, nil
	}
	n, err := d.Publisher.CleanStaging(ctx)
	if err != nil {
		return nil, err
	}
	if n > 0 {
		log.Info("removed what interrupted uploads left in staging", "files", n)
	}
	return d, nil
}

// release closes what Open acquired, in reverse order.
func (d *Daemon) release() error {
	var err error
	if d.Store != nil {
		err = d.Store.Close()
		d.Store = nil
	}
	d.lock.release()
	if d.ln != nil {
		d.ln.Close()
	}
	return err
}

func (d *Daemon) init(ctx context.Context) error {
	// Replicas started together on an empty store: one initialises, the
	// others wait and find it done (two would each store a root and
	// write keys over the other's).
	release, err := d.Store.LockInit(ctx)
	if err != nil {
		return err
	}
	defer release()
	ok, err := d.Publisher.Initialized(ctx)
	if err != nil {
		return err
	}
	if !ok {
		d.log.Info("initialising a new TUF repository", "data", d.cfg.DataDir)
		if err := d.Publisher.Init(ctx); err != nil {
			return fmt.Errorf("initialise repository: %w", err)
		}
	}
	rootPath := filepath.Join(d.cfg.DataDir, RootFile)
	if _, err := os.Stat(rootPath); errors.Is(err, os.ErrNotExist) {
		root, err := d.Store.MetadataVersion(ctx, tufrepo.RoleRoot, 1)
		if err != nil {
			return fmt.Errorf("read root metadata: %w", err)
		}
		if err := atomicfile.WriteFile(rootPath, root.Data, 0o644); err != nil {
			return err
		}
	}
	n, err := d.Store.CountTokens(ctx)
	if err != nil {
		return err
	}
	if n == 0 {
		secret := store.NewSecret(api.TokenPrefix)
		tokPath := filepath.Join(d.cfg.DataDir, AdminTokenFile)
		// The file first: a crash before the insert leaves a token that
		// does not work, and the next start writes a new one.
		if err := atomicfile.WriteFile(tokPath, []byte(secret+"\n"), 0o600); err != nil {
			return err
		}
		if _, err := d.Store.CreateToken(ctx, time.Now(), "admin", protocol.RoleAdmin, secret, "updateserver init"); err != nil {
			return err
		}
		d.log.Info("admin token written", "path", tokPath)
	}
	return nil
}

// Listen binds the configured address; Open already did unless
// Config.Listen was "".
func (d *Daemon) Listen() error {
	if d.ln != nil {
		return nil
	}
	ln, err := net.Listen("tcp", d.cfg.Listen)
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("listen on %s: the address is in use (another updateserver?): stop what uses it, or choose another --listen", d.cfg.Listen)
	}
	if err != nil {
		return fmt.Errorf("listen on %s: %w", d.cfg.Listen, err)
	}
	d.ln = ln
	return nil
}

// Addr is the bound address, after Listen.
func (d *Daemon) Addr() string { return d.ln.Addr().String() }

// Serve runs the HTTP server and the background jobs until ctx ends, then
// shuts down gracefully: in-flight requests get shutdownGrace to finish.
func (d *Daemon) Serve(ctx context.Context) error {
	if d.ln == nil {
		if err := d.Listen(); err != nil {
			return err
		}
	}
	// Job changes wake the webhook sender (their outbox rows are
	// committed by then); the metrics count ended jobs.
	defer d.Fleet.Subscribe(func(fleet.JobEvent) { d.Webhooks.Wake() })()
	defer d.Metrics.Jobs(d.Fleet)()
	// What other replicas change wakes the parts running here.
	defer d.Fleet.Listen(d.Bus)()
	defer d.Store.ListenCaches(d.Bus)()
	for _, topic := range []string{bus.Outbox, bus.Rollouts, bus.Release} {
		defer d.Bus.Subscribe(topic, func(string) { d.Webhooks.Wake() })()
	}
	defer d.Bus.Subscribe(bus.Release, func(p string) {
		if p == bus.Resync {
			p = "" // every product
		}
		d.Fleet.ReleaseChanged(p)
	})()
	srv := &http.Server{
		Handler:           d.handler(),
		ReadHeaderTimeout: cmp.Or(d.cfg.ReadHeaderTimeout, 10*time.Second),
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ErrorLog:          slog.NewLogLogger(d.log.Handler(), slog.LevelWarn),
	}
	// Background jobs end before Serve returns, so the caller may close
	// the store right after.
	bg, stopBG := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		stopBG()
		wg.Wait()
	}()
	// Each job runs on one replica at a time, the holder of its lease:
	// two re-signers would sign two versions with the same number, two
	// webhook senders deliver a webhook twice.
	if pg, ok := d.Bus.(*bus.Postgres); ok {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pg.Run(bg)
		}()
	}
	for name, job := range map[string]func(context.Context){
		"tuf-refresh":     func(ctx context.Context) { d.Publisher.RunRefresher(ctx, d.cfg.RefreshInterval) },
		"uploads-cleanup": d.cleanUploads,
		"job-sweeper":     func(ctx context.Context) { d.Fleet.RunSweeper(ctx, min(time.Minute, d.cfg.JobTimeout/4)) },
		"follow":          d.Fleet.RunFollower,
		"rollouts":        func(ctx context.Context) { d.Fleet.RunRollouts(ctx, fleet.DefaultRolloutTick) },
		"webhooks":        d.Webhooks.Run,
	} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.Leases.Run(bg, name, job)
		}()
	}

	errc := make(chan error, 1)
	scheme := "http://"
	if d.certs != nil {
		scheme = "https://"
		srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: d.certs.GetCertificate}
		go func() { errc <- srv.ServeTLS(d.ln, "", "") }()
	} else {
		go func() { errc <- srv.Serve(d.ln) }()
	}
	d.log.Info("update server listening", "addr", scheme+d.Addr(), "data", d.cfg.DataDir, "store", string(d.Store.Dialect()))
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	d.log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	return nil
}

const shutdownGrace = 15 * time.Second

func (d *Daemon) cleanUploads(ctx context.Context) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if err := d.Publisher.CleanUploads(ctx, 24*time.Hour); err != nil && ctx.Err() == nil {
			d.log.Warn("cleaning staged uploads failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Close releases the store, the data dir's lock and the listener.
func (d *Daemon) Close() error { return d.release() }

// RootSHA256 returns the hex sha256 of DIR/root.json, what agents pin.
func RootSHA256(dataDir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, RootFile))
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}
