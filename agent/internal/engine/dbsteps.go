package engine

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/dropless/dropless/pkg/migrate"
)

// The database steps, present when the agent has a [database]: the
// bundle's migrations/ (the product's whole history) apply through
// pkg/migrate, which applies, in order, those the database has not seen
// and records them in its own table there.
//
//	preflight   Open (the database must be reachable), BackupSize (free
//	            disk), Load the bundle's migrations, Plan: refuses drift
//	            (a recorded migration whose checksum differs from the
//	            bundle's), a bundle older than the database unless the
//	            assignment allows a downgrade, migrations without a down
//	            migration unless the manifest marks them irreversible and
//	            the assignment allows it. Nothing is changed.
//	backing_up  Backup into <data_dir>/backups/<job>: SQLite a copy of
//	            the checkpointed file, verified by sha256 and quick_check
//	            (or by a fingerprint of every row: [database]
//	            backup_verify); PostgreSQL notes the schema (its migrations run in
//	            one transaction, and a committed job is undone by the
//	            recorded down migrations).
//	migrating   Up: the plan, downgrade's down migrations first.
//	rolling_back  OpenBackup + Rollback: SQLite restores the copy,
//	            PostgreSQL runs the recorded downs; ErrNoBackup means Up
//	            never ran, nothing to undo. Rollback is idempotent and
//	            works from the backup directory alone, in whatever process.
//	end of job  the backup directory is removed, unless the job failed
//	            with the site needing a person (then it is kept, and the
//	            failure message names it).
//
// The database is rolled back before the files (see rollbackSteps): the
// old release never starts on the new schema.
const backupsDir = "backups"

func (jb *job) backupDir() string { return filepath.Join(jb.dataDir, backupsDir, jb.rec.ID) }

// dbRetries is how often the rollback tries to reach the database (a
// PostgreSQL server restarting, say) before it gives up.
const dbRetries = 3

// dbRetryPause is the pause between those tries.
var dbRetryPause = 2 * time.Second

// backupStep snapshots the [[data]] paths (data.go) and backs up the
// database before migrating: whichever of the two the agent has.
type backupStep struct{}

func (backupStep) state() state { return stBackingUp }

func (backupStep) message(jb *job) string {
	var parts []string
	if len(jb.data) > 0 {
		parts = append(parts, fmt.Sprintf("snapshotting the app's data (%s) to %s", strings.Join(jb.data, ", "), jb.dataSnapshot()))
	}
	switch {
	case jb.dbCfg == nil:
	case jb.db != nil && jb.db.Driver() == "postgres":
		parts = append(parts, "recording the PostgreSQL schema before migrating (the migrations run in one transaction; a rollback runs the recorded down migrations)")
	default:
		parts = append(parts, "backing up the database to "+jb.backupDir())
	}
	return strings.Join(parts, "; ")
}

func (backupStep) prepare(ctx context.Context, jb *job) error { return nil }

func (backupStep) apply(ctx context.Context, jb *job) error {
	if len(jb.data) > 0 {
		if err := snapshotData(jb.dataSnapshot(), jb.data); err != nil {
			return err
		}
	}
	if jb.dbCfg == nil {
		return nil
	}
	if jb.db == nil || jb.plan == nil {
		return errors.New("no database plan (preflight did not run in this process)")
	}
	b, err := jb.db.Backup(ctx, jb.backupDir(), jb.plan)
	if err != nil {
		return fmt.Errorf("back up the database: %w", err)
	}
	jb.backup = b
	return nil
}

// rollback puts the [[data]] back from their snapshot (a snapshot never
// completed: nothing to do). The database is restored by
// migrateStep.rollback, which runs first.
func (backupStep) rollback(ctx context.Context, jb *job) error {
	return restoreData(jb.dataSnapshot())
}

func (backupStep) commit(ctx context.Context, jb *job) error { return nil }

// cleanup closes the database and removes the backup and the data
// snapshot, unless the job failed in a way that may need them.
func (backupStep) cleanup(ctx context.Context, jb *job) error {
	if jb.db != nil {
		jb.db.Close()
		jb.db = nil
	}
	if jb.keepBackup {
		return nil
	}
	return removeAll(jb.backupDir())
}

// migrateStep applies the plan.
type migrateStep struct{}

func (migrateStep) state() state { return stMigrating }

func (migrateStep) message(jb *job) string {
	if jb.plan == nil || jb.plan.Empty() {
		return "no migrations to apply: the database has every migration of the bundle"
	}
	var parts []string
	if len(jb.plan.Extra) > 0 {
		parts = append(parts, fmt.Sprintf("taking down %d migrations the older release lacks (%s)", len(jb.plan.Extra), appliedNames(jb.plan.Extra)))
	}
	if len(jb.plan.Pending) > 0 {
		parts = append(parts, fmt.Sprintf("applying %d migrations (%s)", len(jb.plan.Pending), migrationNames(jb.plan.Pending)))
	}
	msg := strings.Join(parts, ", then ")
	if jb.plan.Irreversible {
		msg += "; irreversible, as the assignment allowed"
	}
	return msg
}

func migrationNames(ms []migrate.Migration) string {
	names := make([]string, 0, min(len(ms), 6))
	for i, m := range ms {
		if i == 5 {
			names = append(names, fmt.Sprintf("and %d more", len(ms)-5))
			break
		}
		names = append(names, m.Name)
	}
	return strings.Join(names, ", ")
}

func appliedNames(as []migrate.Applied) string {
	names := make([]string, 0, min(len(as), 6))
	for i, a := range as {
		if i == 5 {
			names = append(names, fmt.Sprintf("and %d more", len(as)-5))
			break
		}
		names = append(names, a.Name)
	}
	return strings.Join(names, ", ")
}

// prepare loads the bundle's migrations (kept in the data dir by the
// staging step's prepare, which runs first) and plans them.
func (migrateStep) prepare(ctx context.Context, jb *job) error {
	if jb.db == nil {
		return errors.New("the database is not open")
	}
	ms, err := migrate.Load(metaMigrationsDir(jb.dataDir, jb.rec.To))
	if err != nil {
		return fmt.Errorf("the bundle's migrations: %w", err)
	}
	opts := migrate.PlanOptions{
		Irreversible:      jb.meta.manifest().Irreversible,
		AllowIrreversible: jb.assign.AllowIrreversible,
		AllowDowngrade:    jb.allowDowngrade, // the config's and the assignment's (trust.go)
	}
	p, err := jb.db.Plan(ctx, ms, opts)
	if err != nil {
		return fmt.Errorf("database: %w", err)
	}
	jb.plan = p
	return nil
}

func (migrateStep) apply(ctx context.Context, jb *job) error {
	if jb.backup == nil {
		return errors.New("no database backup (backing_up did not run in this process)")
	}
	return jb.db.Up(ctx, jb.plan, jb.backup, jb.rec.To)
}

// rollback puts the database back as it was before the job, from the
// backup directory alone. Idempotent.
func (migrateStep) rollback(ctx context.Context, jb *job) error {
	b, err := migrate.OpenBackup(jb.backupDir())
	if errors.Is(err, migrate.ErrNoBackup) {
		return nil // Up never ran
	}
	if err != nil {
		return fmt.Errorf("restore the database: %w", err)
	}
	if jb.dbCfg == nil {
		return fmt.Errorf("restore the database: the job backed it up in %s, but the agent's config has no [database] any more: restore it by hand", b.Dir())
	}
	// A database opened by this job's preflight may be mid-use: use a
	// connection of our own.
	if jb.db != nil {
		jb.db.Close()
		jb.db = nil
	}
	ctx = context.WithoutCancel(ctx)
	var last error
	for try := range dbRetries {
		if try > 0 {
			jb.log.Warn("restoring the database failed; trying again", "err", last, "in", dbRetryPause)
			time.Sleep(dbRetryPause)
		}
		db, err := migrate.Open(ctx, jb.dbCfg.Driver, jb.dbCfg.DSN)
		if err != nil {
			last = err
			continue
		}
		err = db.Rollback(ctx, b)
		db.Close()
		if err == nil {
			return nil
		}
		last = err
		// Refusals and failed checks do not go away by trying again.
		if errors.Is(err, migrate.ErrVerify) || errors.Is(err, migrate.ErrStale) || errors.Is(err, migrate.ErrIrreversible) || errors.Is(err, migrate.ErrMigration) {
			break
		}
	}
	return fmt.Errorf("restore the database (backup in %s): %w", b.Dir(), last)
}

func (migrateStep) commit(ctx context.Context, jb *job) error { return nil }

func (migrateStep) cleanup(ctx context.Context, jb *job) error { return nil }
