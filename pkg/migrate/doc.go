// Package migrate applies a bundle's SQL migrations to the client's
// database, and rolls them back: the runner the agent's upgrade engine
// calls in its preflight, backing_up, migrating and rolling_back states.
//
// A bundle's migrations/ holds the product's whole history as
// NNNN_name.up.sql and NNNN_name.down.sql ([Load]). The runner applies, in
// ID order, those the database has not seen, and records each (id, name,
// checksum, applied_at, release, and its down migration) in a table of its
// own, [TableName]. Drivers: "sqlite" (modernc.org/sqlite) and "postgres"
// (github.com/jackc/pgx/v5 through database/sql). Another engine is one
// implementation of the package's dialect interface.
//
// A job, as the engine drives it:
//
//	ms, err := migrate.Load(filepath.Join(unpacked, "migrations"))  // preflight
//	db, err := migrate.Open(ctx, cfg.Driver, cfg.DSN)
//	plan, err := db.Plan(ctx, ms, migrate.PlanOptions{Irreversible: manifest.Irreversible})
//	b, err := db.Backup(ctx, filepath.Join(dataDir, "backups", job), plan) // backing_up, app stopped
//	err = db.Up(ctx, plan, b, release)                                       // migrating
//	// rolling_back, possibly in a new process after a crash:
//	b, err := migrate.OpenBackup(dir) // ErrNoBackup: Up never ran, nothing to undo
//	err = db.Rollback(ctx, b)         // idempotent
//
// Plan changes nothing (it does not even create the record table, nor a
// SQLite file that does not exist yet) and refuses, with a message naming
// the migrations: drift, a recorded migration whose checksum differs from
// the bundle's ([ErrDrift]); a database newer than the bundle
// ([ErrBundleOlder]) unless downgrading; pending migrations without a down
// migration unless the bundle is marked irreversible and the caller allows
// it ([ErrIrreversible]).
//
// SQLite: Backup folds the WAL into the database file and copies the
// file (copy_file_range, like cp) under the database's write lock, and
// verifies the copy: its sha256 against the file's, PRAGMA quick_check,
// the migration records ([DB.SetBackupVerify] with [VerifyFingerprint]
// adds integrity_check and [DB.Fingerprint]); Up runs each migration in
// its own transaction; Rollback checks the copy's sha256, copies it next
// to the database, syncs it and renames it over the database (its -wal,
// -shm and -journal removed first).
// PostgreSQL: Up runs the job's migrations in one transaction, so a
// failure leaves nothing behind; Rollback of a committed job runs the
// recorded down migrations, newest first, in one transaction and checks
// that the schema is the one from before the job.
//
// For the agent's schema drift (a SQL script run by hand), [ReadSchema]
// lists the schema's tables, columns, indexes, views ... by name with
// their definitions normalised ([NormalizeSQL]), reading only, while the
// app runs.
package migrate
