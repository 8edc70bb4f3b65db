package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/dustin/go-humanize"

	"github.com/dropless/dropless/agent/internal/drift"
	"github.com/dropless/dropless/pkg/bundle"
	"github.com/dropless/dropless/pkg/migrate"
	"github.com/dropless/dropless/pkg/protocol"
)

// preflightMessage is the preflight event's message: what it checks.
func preflightMessage(jb *job) string {
	checks := []string{"drift", "free disk"}
	if len(jb.data) > 0 {
		checks[1] = "free disk (the data snapshot included)"
	}
	if jb.dbCfg != nil {
		checks = append(checks, "the database and its migrations")
	}
	return "checking " + strings.Join(checks, ", ") + "; unpacking the bundle"
}

// preflightError is the reason of a preflight failure: "preflight: ...",
// except drift, whose reason starts with "drift:".
func preflightError(err error) error {
	var de *drift.Error
	if errors.As(err, &de) {
		return err
	}
	return fmt.Errorf("preflight: %w", err)
}

// preflight refuses before anything is touched, the app still running
// (download already refused what the release team did not sign for this
// agent, downgrades and upgrade_from included: see trust.go): a current
// the agent cannot
// switch, drift of the running release (unless the assignment accepts
// it), the database unreachable, free disk; then every step's prepare
// (unpacking, recording the release, planning the migrations, which
// refuses migration drift and migrations that cannot be rolled back). It
// returns what current points at ("" on a fresh site). No other job is
// unfinished: createJob checked that in the transaction that created this
// one.
func (e *Engine) preflight(ctx context.Context, jb *job) (string, error) {
	prevLink, ok, err := readCurrent(jb.installDir)
	if err != nil {
		return "", err
	}
	if ok {
		if v := linkVersion(prevLink); v != jb.rec.From {
			jb.log.Warn("current does not point at the installed version", "current", prevLink, "installed", jb.rec.From)
		}
		if prevLink == releaseLink(jb.rec.To) {
			return "", fmt.Errorf("current already points at %s, but the journal says %q is installed (a failed rollback?): check the site by hand", prevLink, jb.rec.From)
		}
	}
	var backupSize int64
	if jb.dbCfg != nil {
		db, err := migrate.Open(ctx, jb.dbCfg.Driver, jb.dbCfg.DSN)
		if err != nil {
			return "", fmt.Errorf("database unreachable: %w", err)
		}
		jb.db = db // closed by backupStep.cleanup
		if err := db.SetBackupVerify(jb.dbCfg.BackupVerify); err != nil {
			return "", fmt.Errorf("database: %w", err)
		}
		if backupSize, err = db.BackupSize(); err != nil {
			return "", fmt.Errorf("database: size of the backup: %w", err)
		}
	}
	if err := e.checkSiteDrift(ctx, jb); err != nil {
		return "", err
	}
	if len(jb.data) > 0 {
		n, err := dataSize(jb.data)
		if err != nil {
			return "", fmt.Errorf("data: %w", err)
		}
		backupSize += n
	}
	if err := checkDisk(jb, backupSize); err != nil {
		return "", err
	}
	for _, s := range jb.steps() {
		if err := s.prepare(ctx, jb); err != nil {
			return "", err
		}
	}
	if hs := jb.meta.manifest().Health; hasHealth(hs) {
		jb.log.Info("the bundle overrides the health check", "url", hs.URL, "cmd", hs.Cmd, "timeout", hs.Timeout)
	}
	return prevLink, nil
}

// checkSiteDrift measures the drift of the running release, hashing every
// file, and records it (Status.Drift). Drift fails the job unless the
// assignment accepts it (schema drift only reported does not); accepted,
// it is noted in the stopping event and the database's schema is recorded
// as the new baseline.
func (e *Engine) checkSiteDrift(ctx context.Context, jb *job) error {
	if jb.rec.From == "" {
		return nil
	}
	d, err := e.siteDrift(ctx, jb.rec.From, nil)
	if errors.Is(err, errNoMeta) {
		jb.log.Warn("drift not checked: the agent has no record of the installed release's bundle (installed before the agent kept one)", "version", jb.rec.From)
		return nil
	}
	if err != nil {
		return err
	}
	if rerr := e.recordDrift(ctx, drift.Cap(d)); rerr != nil {
		jb.log.Warn("record drift", "err", rerr)
	}
	blocking := protocol.BlockingDrift(d)
	if len(blocking) < len(d) {
		jb.log.Warn("schema drift reported only (schema_drift = report): the job goes ahead", "changes", len(d)-len(blocking))
	}
	if len(blocking) == 0 {
		return nil
	}
	if !jb.assign.AcceptDrift {
		return &drift.Error{Version: jb.rec.From, Changes: blocking}
	}
	jb.log.Warn("drift accepted by the assignment: the new release replaces the changed files", "changes", len(blocking))
	jb.driftNote = drift.Summary(blocking)
	// The schema as it is now is accepted: not reported again, whatever
	// becomes of the job.
	e.recordSchemaAfterJob(ctx, jb, jb.rec.From)
	return nil
}

// diskMargin is the free disk kept to spare beyond what a job writes:
// 5% and 32 MiB.
func diskMargin(n uint64) uint64 { return n + n/20 + 32<<20 }

// checkDisk refuses a job that would fill the disk: the unpacked bundle in
// the install dir, the database backup and the [[data]] snapshot
// (backupSize: both) and the bundle's migrations and hooks in the data
// dir (on one file system, their sum). A reflinked snapshot may take
// less; the check counts a full copy.
func checkDisk(jb *job, backupSize int64) error {
	f, err := os.Open(jb.bundlePath())
	if err != nil {
		return err
	}
	defer f.Close()
	// Scan tells the unpacked size without writing anything.
	scan, err := bundle.Scan(f, bundle.Limits{})
	if err != nil {
		return err
	}
	var kept int64 // what the data dir keeps of the bundle
	for _, bf := range scan.Files {
		if !strings.HasPrefix(bf.Path, bundle.FilesDir+"/") {
			kept += bf.Size
		}
	}
	rels := filepath.Join(jb.installDir, releasesDir)
	if err := os.MkdirAll(rels, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", rels, err)
	}
	type need struct {
		dir   string
		bytes uint64
		what  string
	}
	needs := []need{
		{rels, uint64(scan.TotalSize), "the release"},
		{jb.dataDir, uint64(backupSize + kept), "the backups of the database and data and the bundle's migrations and hooks"},
	}
	if same, known := sameFileSystem(rels, jb.dataDir); same || !known {
		needs = []need{{rels, uint64(scan.TotalSize + backupSize + kept), "the release and the backups of the database and data"}}
		if backupSize == 0 {
			needs[0].what = "the release"
		}
	}
	for _, n := range needs {
		want := diskMargin(n.bytes)
		free, known, err := freeSpace(n.dir)
		switch {
		case err != nil:
			return fmt.Errorf("free disk in %s: %w", n.dir, err)
		case !known:
			jb.log.Warn("cannot tell the free disk space on this OS; not checked", "dir", n.dir)
		case free < want:
			return fmt.Errorf("not enough free disk in %s: %s needs %s, %s free", n.dir, n.what, humanize.IBytes(want), humanize.IBytes(free))
		}
	}
	return nil
}

func hasHealth(h bundle.Health) bool { return h.URL != "" || len(h.Cmd) > 0 || h.Timeout != "" }

// healthy checks the health of release v, which runs: with the [health]
// of its bundle when it has one (Config.HealthOverride), else App's.
func (e *Engine) healthy(ctx context.Context, v string) error {
	if v == "" {
		return e.cfg.App.Healthy(ctx)
	}
	m, err := loadReleaseMeta(e.cfg.DataDir, v)
	if err != nil || !hasHealth(m.manifest().Health) {
		return e.cfg.App.Healthy(ctx)
	}
	h := m.manifest().Health
	if e.cfg.HealthOverride == nil {
		e.log.Warn("the bundle's [health] is ignored: this agent cannot override its health check", "version", v)
		return e.cfg.App.Healthy(ctx)
	}
	hc, err := e.cfg.HealthOverride(h)
	if err != nil {
		return fmt.Errorf("the [health] of release %s: %w", v, err)
	}
	return hc.Healthy(ctx)
}
