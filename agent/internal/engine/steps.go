package engine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"slices"

	"github.com/dropless/dropless/agent/internal/config"
	"github.com/dropless/dropless/agent/internal/drift"
	"github.com/dropless/dropless/pkg/atomicfile"
	"github.com/dropless/dropless/pkg/bundle"
	"github.com/dropless/dropless/pkg/migrate"
	"github.com/dropless/dropless/pkg/protocol"
)

// job is one job in memory: its journal record, plus what this process
// learnt while running it. After a restart only the record is known; every
// step's rollback, commit and cleanup work from the record alone.
type job struct {
	rec        *jobRecord
	installDir string
	dataDir    string
	keep       int
	dbCfg      *config.Database // the agent's [database]; nil: no database steps
	data       []string         // the agent's [[data]] paths
	log        *slog.Logger

	// keepBackup keeps the database backup at cleanup: the job failed
	// and the site may need it restored by hand.
	keepBackup bool

	// Known only in the process that ran the job from its start:
	assign protocol.Assignment // what the server asked for
	// allowDowngrade: the config and the assignment both allow going
	// back (trust.go); the migration planner gets this.
	allowDowngrade bool
	custom         protocol.TargetCustom // from the Fetcher
	info           *bundle.Info          // the unpacked bundle, set in preflight
	meta           *releaseMeta          // its record in the data dir, set in preflight
	reuse          bool                  // releases/<to> already holds exactly this release
	// driftNote summarizes the drift the assignment accepted.
	driftNote string
	db        *migrate.DB     // the database, opened in preflight
	plan      *migrate.Plan   // the migrations, planned in preflight
	backup    *migrate.Backup // made in backing_up
}

func (e *Engine) newJob(rec *jobRecord) *job {
	return &job{
		rec:        rec,
		installDir: e.cfg.InstallDir,
		dataDir:    e.cfg.DataDir,
		keep:       e.cfg.KeepReleases,
		dbCfg:      e.cfg.Database,
		data:       e.cfg.Data,
		log:        e.log.With("job", rec.ID, "from", rec.From, "to", rec.To),
	}
}

func (jb *job) downloadsDir() string { return filepath.Join(jb.dataDir, "downloads") }
func (jb *job) bundlePath() string {
	return filepath.Join(jb.downloadsDir(), jb.rec.SHA256+".tar.gz")
}
func (jb *job) staging() string { return stagingDir(jb.installDir, jb.rec.To) }
func (jb *job) release() string { return releaseDir(jb.installDir, jb.rec.To) }

// prevVersion is the release that ran before the job ("" when nothing was
// installed, or current pointed outside releases/).
func (jb *job) prevVersion() string { return linkVersion(jb.rec.PrevLink) }

// A step is one part of installing a release that the app must be stopped
// for. Files come in two steps (staging, switching), the database in two
// more (backing_up, migrating; only when the agent has a [database]; the
// [[data]] paths are snapshotted in backing_up too, see data.go),
// applied in the order of the states: staging, backing_up, migrating,
// switching. The bundle's hooks run inside stopping, staging and starting
// (see hooks.go). The engine drives every step through this lifecycle:
//
//  1. prepare, during preflight, with the app still running, for every
//     step in order: check and stage everything that can be done ahead
//     (unpack, verify, plan the migrations), so that downtime is only
//     stop -> switch -> start. It must not change anything the running
//     app uses. An error fails the job with the app untouched.
//  2. apply, after the app was stopped, for every step in order, each
//     after its state() was journaled and synced. An error rolls back.
//     apply is never resumed after a crash: recovery rolls back instead,
//     so apply may rely on what prepare learnt in memory.
//  3. rollback, in rolling_back, for every step in rollbackSteps order
//     (the database steps in reverse, then the file steps in reverse: the
//     database is restored before the files are switched back), whether
//     or not its apply ran, finished or failed. It may run again after a
//     crash, in another process, without prepare: it must be idempotent
//     and work from the journal record (and what the steps keep in the
//     data dir) alone. The app is stopped before and started after the
//     rollbacks. An error stops the rollback: the job ends failed.
//  4. commit, in committed, after the new release passed its health
//     check, for every step in order. Idempotent (it may run again after
//     a crash); errors are logged, not fatal: the release already runs.
//  5. cleanup, at the end of every job whatever its result, for every
//     step. Idempotent; errors are logged.
type step interface {
	state() state
	// message describes what apply is about to do, for the event.
	message(jb *job) string
	prepare(ctx context.Context, jb *job) error
	apply(ctx context.Context, jb *job) error
	rollback(ctx context.Context, jb *job) error
	commit(ctx context.Context, jb *job) error
	cleanup(ctx context.Context, jb *job) error
}

// steps returns the steps of a job, in the order they apply. It depends
// on the agent's config, so that a recovery finds the same steps, and on
// a [[data]] snapshot the job left: a recovery after the config lost its
// [[data]] still puts them back.
func (jb *job) steps() []step {
	switch {
	case jb.dbCfg != nil:
		return []step{stageStep{}, backupStep{}, migrateStep{}, switchStep{}}
	case len(jb.data) > 0 || jb.hasDataSnapshot():
		return []step{stageStep{}, backupStep{}, switchStep{}}
	}
	return []step{stageStep{}, switchStep{}}
}

// rollbackSteps returns the steps in the order they roll back: the
// database and the [[data]] first (restored while current still points
// at the release that matches them), then the files, each group in
// reverse.
func (jb *job) rollbackSteps() []step {
	var db, files []step
	for _, s := range slices.Backward(jb.steps()) {
		switch s.state() {
		case stBackingUp, stMigrating:
			db = append(db, s)
		default:
			files = append(files, s)
		}
	}
	return append(db, files...)
}

// stageStep unpacks the bundle into releases/.<v>.staging during
// preflight, and moves its files/ to releases/<v> in staging.
type stageStep struct{}

func (stageStep) state() state { return stStaging }

func (stageStep) message(jb *job) string {
	if jb.reuse {
		return fmt.Sprintf("reusing releases/%s: it matches the bundle", jb.rec.To)
	}
	return fmt.Sprintf("installing releases/%s", jb.rec.To)
}

// prepare unpacks the bundle (preflight checked the free disk) and
// records the release in the data dir: its files' truth, manifest,
// migrations and hooks.
func (stageStep) prepare(ctx context.Context, jb *job) error {
	rels := filepath.Join(jb.installDir, releasesDir)
	if err := os.MkdirAll(rels, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", rels, err)
	}
	f, err := os.Open(jb.bundlePath())
	if err != nil {
		return err
	}
	defer f.Close()
	// A staging dir left by an interrupted job is stale: start afresh.
	if err := os.RemoveAll(jb.staging()); err != nil {
		return err
	}
	info, err := bundle.Unpack(ctx, f, jb.staging(), bundle.Limits{})
	if err != nil {
		return err
	}
	jb.info = info
	if err := syncTree(filepath.Join(jb.staging(), bundle.FilesDir)); err != nil {
		return err
	}
	if err := atomicfile.SyncDir(rels); err != nil {
		return err
	}
	jb.meta = newReleaseMeta(jb.rec.To, jb.rec.SHA256, info)
	if err := os.MkdirAll(metaRoot(jb.dataDir), 0o700); err != nil {
		return err
	}
	if err := writeReleaseMeta(jb.dataDir, jb.meta, jb.staging()); err != nil {
		return fmt.Errorf("record release %s in %s: %w", jb.rec.To, metaRoot(jb.dataDir), err)
	}
	if len(info.Migrations) > 0 && jb.dbCfg == nil {
		return fmt.Errorf("the bundle has %d migration files but the agent's config has no [database]: add [database] driver and dsn so the agent can migrate the database", len(info.Migrations))
	}
	// A kept release of the same version (a re-install): reuse it if it
	// holds exactly the bundle's files, else staging replaces it. It is
	// neither current nor the rollback target (preflight checked).
	if _, err := os.Lstat(jb.release()); err == nil {
		diff, derr := drift.Files(jb.release(), jb.meta.Files, nil, nil)
		switch {
		case derr != nil:
			jb.log.Warn("kept release unreadable; replacing it", "dir", jb.release(), "err", derr)
		case len(diff) > 0:
			jb.log.Warn("kept release differs from the bundle; replacing it", "dir", jb.release(), "changes", len(diff), "first", diff[0])
		default:
			jb.reuse = true
			jb.log.Info("kept release matches the bundle; reusing it", "dir", jb.release())
		}
	}
	return nil
}

func (stageStep) apply(ctx context.Context, jb *job) error {
	if jb.reuse {
		return nil
	}
	if err := os.RemoveAll(jb.release()); err != nil {
		return fmt.Errorf("replace %s: %w", jb.release(), err)
	}
	// Rename within the install dir's file system; syncing releases/
	// makes the new name durable.
	if err := atomicfile.Rename(filepath.Join(jb.staging(), bundle.FilesDir), jb.release()); err != nil {
		return fmt.Errorf("stage release %s: %w", jb.rec.To, err)
	}
	return nil
}

// rollback removes the release dir the job created, unless current
// points at it (the switch back failed: never delete what may run).
func (stageStep) rollback(ctx context.Context, jb *job) error {
	if !jb.rec.ReleaseCreated || jb.rec.PrevLink == releaseLink(jb.rec.To) {
		return nil
	}
	if cur, ok, _ := readCurrent(jb.installDir); ok && cur == releaseLink(jb.rec.To) {
		return fmt.Errorf("not removing releases/%s: current still points at it", jb.rec.To)
	}
	return removeAll(jb.release())
}

func (stageStep) commit(ctx context.Context, jb *job) error { return nil }

func (stageStep) cleanup(ctx context.Context, jb *job) error {
	err := removeAll(jb.staging())
	if rerr := removeAll(metaTmpPath(jb.dataDir, jb.rec.To)); err == nil {
		err = rerr
	}
	return err
}

// switchStep points current at the new release; rolling back points it
// back at what it was (or removes it on a fresh site).
type switchStep struct{}

func (switchStep) state() state { return stSwitching }

func (switchStep) message(jb *job) string {
	return fmt.Sprintf("current -> releases/%s", jb.rec.To)
}

func (switchStep) prepare(ctx context.Context, jb *job) error { return nil }

func (switchStep) apply(ctx context.Context, jb *job) error {
	return switchCurrent(jb.installDir, releaseLink(jb.rec.To))
}

func (switchStep) rollback(ctx context.Context, jb *job) error {
	cur, ok, err := readCurrent(jb.installDir)
	if err != nil {
		return err
	}
	switch {
	case jb.rec.PrevLink == "":
		if !ok {
			return nil
		}
		return removeCurrent(jb.installDir)
	case ok && cur == jb.rec.PrevLink:
		return nil
	}
	return switchCurrent(jb.installDir, jb.rec.PrevLink)
}

// commit prunes old releases, keeping the new one and the one it
// replaced.
func (switchStep) commit(ctx context.Context, jb *job) error {
	protect := []string{jb.rec.To}
	if v := jb.prevVersion(); v != "" {
		protect = append(protect, v)
	}
	if cur, ok, _ := readCurrent(jb.installDir); ok {
		if v := linkVersion(cur); v != "" {
			protect = append(protect, v)
		}
	}
	err := prune(jb.installDir, jb.keep, protect, jb.log)
	if merr := pruneMeta(jb.dataDir, jb.installDir, protect, jb.log); err == nil {
		err = merr
	}
	return err
}

func (switchStep) cleanup(ctx context.Context, jb *job) error {
	return nil
}

// cleanupDownloads removes the downloaded bundles: one job runs at a time,
// so whatever is there belongs to this job or to an interrupted one.
func cleanupDownloads(jb *job) error {
	err := os.RemoveAll(jb.downloadsDir())
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
