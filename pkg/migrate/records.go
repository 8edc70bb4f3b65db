package migrate

import (
	"context"
	"database/sql"
	"fmt"
)

// ReadRecords returns every migration recorded in the database of driver
// and dsn (as Open takes them), in ID order, drift included: where Plan
// refuses a record that disagrees with the bundle, ReadRecords returns it,
// for a caller that reports drift (the agent compares the records with
// its running release between jobs).
//
// It only reads, while the app runs: a SQLite file is opened read-only
// and nothing is created; a SQLite file that does not exist, or a
// database without the record table, has no records.
func ReadRecords(ctx context.Context, driver, dsn string) ([]Applied, error) {
	d, pool, err := openForReading(ctx, driver, dsn)
	if err != nil || pool == nil {
		return nil, err
	}
	db := &DB{d: d, pool: pool}
	defer db.Close()
	recs, _, err := db.records(ctx, pool)
	return recs, err
}

// readOnlyOpener is implemented by dialects whose open would take more
// than ReadRecords needs (SQLite: a read-write handle on the app's file).
type readOnlyOpener interface {
	openReadOnly() (*sql.DB, error)
}

// openReadOnly opens the database file read-only, waiting for a writer's
// lock as long as the runner does.
func (d *sqliteDialect) openReadOnly() (*sql.DB, error) {
	pool, err := sql.Open("sqlite", sqliteURI(d.path, fmt.Sprintf("mode=ro&_pragma=busy_timeout(%d)", sqliteBusyTimeout.Milliseconds())))
	if err != nil {
		return nil, err
	}
	pool.SetMaxOpenConns(1)
	return pool, nil
}
