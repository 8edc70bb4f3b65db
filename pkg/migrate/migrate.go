package migrate

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"
)

// DB is a client database the runner migrates. A DB is used by one
// goroutine at a time (the engine's job); Close it when done.
type DB struct {
	d      dialect
	pool   *sql.DB
	verify string // SetBackupVerify
}

// Open opens the database of the agent's [database] config: driver
// "sqlite" (dsn: the file's path, or a file: URI, with modernc.org/sqlite
// query parameters) or "postgres" (dsn: a URL or key=value string as pgx
// reads it). A PostgreSQL database must be reachable. A SQLite file that
// does not exist yet is not created (Plan then sees an empty database, and
// Up creates it); its directory must exist.
func Open(ctx context.Context, driver, dsn string) (*DB, error) {
	d, err := newDialect(driver, dsn)
	if err != nil {
		return nil, err
	}
	pool, err := d.open(ctx)
	if err != nil {
		return nil, err
	}
	return &DB{d: d, pool: pool}, nil
}

// newDialect returns the dialect of driver for dsn.
func newDialect(driver, dsn string) (dialect, error) {
	mk, ok := dialects[driver]
	if !ok {
		return nil, errorf(ErrUnsupported, "database driver %q is not supported; use sqlite or postgres", driver)
	}
	return mk(dsn)
}

// Close closes the database.
func (db *DB) Close() error { return db.pool.Close() }

// Driver returns the driver name given to Open.
func (db *DB) Driver() string { return db.d.name() }

// Applied is a migration recorded in the database.
type Applied struct {
	ID        int       `json:"id"`
	Name      string    `json:"name"`
	Checksum  string    `json:"checksum"`
	AppliedAt time.Time `json:"applied_at"`
	// Release is the release whose job applied the migration.
	Release string `json:"release"`
	// HasDown says a down migration was recorded with it.
	HasDown bool `json:"has_down"`

	down string // the recorded down migration
}

// File returns the migration's up file name, e.g. "0001_init.up.sql".
func (a Applied) File() string { return a.Name + ".up.sql" }

// PlanOptions are the caller's decisions that Plan needs.
type PlanOptions struct {
	// Irreversible is the bundle manifest's irreversible flag: the release
	// team declares its migrations cannot be rolled back.
	Irreversible bool
	// AllowIrreversible is the operator's explicit permission to apply a
	// bundle marked irreversible. A bundle whose pending migrations lack a
	// down migration needs both flags.
	AllowIrreversible bool
	// AllowDowngrade permits a bundle older than the database: migrations
	// recorded in the database but missing from the bundle are then taken
	// down by Up (their recorded down migrations, newest first) instead of
	// refused with ErrBundleOlder.
	AllowDowngrade bool
}

// Plan is what Up will do to a database: the difference between the
// bundle's migrations and the database's records. Plan is read-only; make
// a new one if the database may have changed.
type Plan struct {
	// Applied is the record table's content, by ID (empty when the
	// database was never migrated).
	Applied []Applied
	// Pending are the bundle's migrations the database has not seen, in
	// the order Up applies them (ascending ID).
	Pending []Migration
	// Extra are recorded migrations missing from the bundle, newest first,
	// which Up takes down before applying Pending. Only a downgrade plan
	// (PlanOptions.AllowDowngrade) has them.
	Extra []Applied
	// Irreversible says a pending migration has no down migration, or the
	// bundle is marked irreversible, and the caller allowed it. On SQLite
	// a rollback still restores the backup; on PostgreSQL a committed job
	// with a migration that has no down migration cannot be rolled back
	// (Rollback returns ErrIrreversible and changes nothing).
	Irreversible bool

	driver, target string
}

// Empty reports whether Up has nothing to do.
func (p *Plan) Empty() bool { return len(p.Pending) == 0 && len(p.Extra) == 0 }

// Plan compares the bundle's migrations ms (from Load, in ID order) with
// the database's records, without changing anything (a database never
// migrated has no record table, and Plan does not create it). It refuses,
// touching nothing:
//   - drift: a recorded migration whose checksum or name differs from the
//     bundle's migration with that ID (ErrDrift, naming each);
//   - recorded migrations the bundle does not have, unless
//     opts.AllowDowngrade (ErrBundleOlder); a downgrade whose migrations
//     were recorded without a down migration (ErrIrreversible);
//   - pending migrations without a down migration, unless the bundle is
//     marked irreversible and the caller allows it (ErrIrreversible); a
//     bundle marked irreversible needs opts.AllowIrreversible.
//
// A pending migration numbered below a recorded one (a hot fix line's
// migration) is applied too, in ID order with the others.
func (db *DB) Plan(ctx context.Context, ms []Migration, opts PlanOptions) (*Plan, error) {
	if err := checkSet(ms); err != nil {
		return nil, err
	}
	recs, _, err := db.records(ctx, db.pool)
	if err != nil {
		return nil, err
	}
	p, err := makePlan(ms, recs, opts)
	if err != nil {
		return nil, err
	}
	p.driver, p.target = db.d.name(), db.d.target()
	return p, nil
}

// makePlan compares ms with the records recs.
func makePlan(ms []Migration, recs []Applied, opts PlanOptions) (*Plan, error) {
	p := &Plan{Applied: recs}
	byID := make(map[int]Migration, len(ms))
	for _, m := range ms {
		byID[m.ID] = m
	}
	var drift []string
	seen := map[int]bool{}
	for _, r := range recs {
		seen[r.ID] = true
		m, ok := byID[r.ID]
		switch {
		case !ok:
			p.Extra = append(p.Extra, r)
		case m.Name != r.Name:
			drift = append(drift, fmt.Sprintf("%s is recorded as applied but the bundle's migration %d is %s", r.Name, r.ID, m.Name))
		case m.Checksum != r.Checksum:
			drift = append(drift, fmt.Sprintf("%s was applied with checksum %.12s but the bundle's %s has %.12s", r.Name, r.Checksum, m.UpFile(), m.Checksum))
		}
	}
	if len(drift) > 0 {
		return nil, errorf(ErrDrift, "migration drift: %s; the database or the bundle was changed by hand (a migration run or edited outside the release process). Nothing was changed: have support reconcile the database with the bundle before upgrading", strings.Join(drift, "; "))
	}
	if len(p.Extra) > 0 {
		if !opts.AllowDowngrade {
			return nil, errorf(ErrBundleOlder, "the database has %s applied, which the bundle does not have: the bundle is older than the database. Nothing was changed: install a release at least as new as %s, or plan a downgrade explicitly", names(p.Extra), p.Extra[len(p.Extra)-1].Release)
		}
		slices.Reverse(p.Extra)
		var noDown []Applied
		for _, r := range p.Extra {
			if !r.HasDown {
				noDown = append(noDown, r)
			}
		}
		if len(noDown) > 0 {
			return nil, errorf(ErrIrreversible, "cannot downgrade: %s was applied without a down migration. Nothing was changed: restore the database from a backup instead", names(noDown))
		}
	}
	var noDown []string
	for _, m := range ms {
		if seen[m.ID] {
			continue
		}
		p.Pending = append(p.Pending, m)
		if !m.HasDown {
			noDown = append(noDown, m.DownFile())
		}
	}
	switch {
	case len(p.Pending) == 0:
	case len(noDown) > 0 && !opts.Irreversible:
		return nil, errorf(ErrIrreversible, "the bundle has no %s, so a failed upgrade could not be undone; add the down migration, or mark the bundle irreversible (irreversible = true in bundle.toml)", strings.Join(noDown, ", "))
	case opts.Irreversible && !opts.AllowIrreversible:
		return nil, errorf(ErrIrreversible, "the bundle marks its migrations irreversible, so a failed upgrade might not be undone; apply it only with the explicit permission to run irreversible migrations")
	case opts.Irreversible || len(noDown) > 0:
		p.Irreversible = true
	}
	return p, nil
}

func names(as []Applied) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.Name
	}
	return strings.Join(s, ", ")
}

// records reads the record table, in ID order; exists is false when the
// database or the table does not exist.
func (db *DB) records(ctx context.Context, q querier) (recs []Applied, exists bool, err error) {
	if ok, err := db.d.exists(); err != nil || !ok {
		return nil, false, err
	}
	if ok, err := db.d.tableExists(ctx, q); err != nil || !ok {
		if err != nil {
			err = fmt.Errorf("read %s: %w", TableName, err)
		}
		return nil, false, err
	}
	rows, err := q.QueryContext(ctx, "SELECT id, name, checksum, applied_at, release, down_sql FROM "+db.d.table()+" ORDER BY id")
	if err != nil {
		return nil, false, fmt.Errorf("read %s: %w", TableName, err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			a    Applied
			id   int64
			at   any
			down sql.NullString
		)
		if err := rows.Scan(&id, &a.Name, &a.Checksum, &at, &a.Release, &down); err != nil {
			return nil, false, fmt.Errorf("read %s: %w", TableName, err)
		}
		a.ID = int(id)
		if a.AppliedAt, err = parseTime(at); err != nil {
			return nil, false, fmt.Errorf("read %s: migration %s: %w", TableName, a.Name, err)
		}
		a.down, a.HasDown = down.String, down.Valid
		recs = append(recs, a)
	}
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("read %s: %w", TableName, err)
	}
	return recs, true, nil
}

func parseTime(v any) (time.Time, error) {
	switch v := v.(type) {
	case time.Time:
		return v.UTC(), nil
	case string:
		return time.Parse(time.RFC3339Nano, v)
	case []byte:
		return time.Parse(time.RFC3339Nano, string(v))
	}
	return time.Time{}, fmt.Errorf("applied_at: unexpected %T", v)
}

// sameRecords reports whether two reads of the record table are equal.
func sameRecords(a, b []Applied) bool {
	return slices.EqualFunc(a, b, func(x, y Applied) bool {
		return x.ID == y.ID && x.Name == y.Name && x.Checksum == y.Checksum && x.Release == y.Release &&
			x.AppliedAt.Equal(y.AppliedAt) && x.HasDown == y.HasDown && x.down == y.down
	})
}

// testHook, when set by a test, is called at points of interest: with a
// migration's file name after its SQL ran, inside its transaction; with
// "restore" after SQLite's restore, before its check. Crash tests exit the
// process there.
var testHook func(point string)

// step is one migration to run, up or down.
type step struct {
	file string
	sql  string
	up   *Migration // nil: a down step for the record id
	id   int
}

func (p *Plan) steps() []step {
	var ss []step
	for _, a := range p.Extra {
		ss = append(ss, step{file: a.Name + ".down.sql", sql: a.down, id: a.ID})
	}
	for i := range p.Pending {
		m := &p.Pending[i]
		ss = append(ss, step{file: m.UpFile(), sql: m.Up, up: m, id: m.ID})
	}
	return ss
}

// Up applies the plan (made by Plan on this database) and records each
// migration with release. It needs the job's backup, made of this plan by
// Backup: Up runs only after a backup, so Rollback always has one.
//
// It first checks, under the lock, that the records still equal the
// plan's (ErrStale otherwise) and creates the record table if needed.
// SQLite: each migration runs in its own transaction with its record, so
// a failure leaves the earlier ones applied: call Rollback, which restores
// the backup. PostgreSQL: all of them run in one transaction, which a
// failure rolls back entirely (Rollback is then a no-op). A failing
// migration's error is a *MigrationError naming its file.
//
// Migrations must not contain transaction control (BEGIN, COMMIT,
// ROLLBACK) nor statements that cannot run in a transaction (SQLite
// VACUUM; PostgreSQL CREATE INDEX CONCURRENTLY, VACUUM ...).
func (db *DB) Up(ctx context.Context, p *Plan, b *Backup, release string) error {
	if err := db.checkPlan(p); err != nil {
		return err
	}
	if b == nil {
		return errorf(ErrNoBackup, "migrate: Up needs the job's backup; call Backup first")
	}
	if err := b.check(db, p); err != nil {
		return err
	}
	if release == "" {
		return errors.New("migrate: Up needs the release being installed, to record it")
	}
	if p.Empty() {
		return nil
	}
	if u, ok := db.d.(interface{ prepareUp() error }); ok {
		if err := u.prepareUp(); err != nil {
			return err
		}
	}
	at := time.Now().UTC().Truncate(time.Microsecond)
	steps := p.steps()
	if _, ok := db.d.(snapshotter); ok {
		for i, s := range steps {
			err := db.inTx(ctx, func(tx *sql.Tx) error {
				if i == 0 {
					if err := db.begin(ctx, tx, p); err != nil {
						return err
					}
				}
				return db.run(ctx, tx, s, "", release, at)
			})
			if err != nil {
				return err
			}
		}
		return nil
	}
	return db.inTx(ctx, func(tx *sql.Tx) error {
		if err := db.begin(ctx, tx, p); err != nil {
			return err
		}
		id, err := db.d.txID(ctx, tx)
		if err != nil {
			return err
		}
		for _, s := range steps {
			if err := db.run(ctx, tx, s, id, release, at); err != nil {
				return err
			}
		}
		return nil
	})
}

func (db *DB) checkPlan(p *Plan) error {
	if p == nil || p.driver != db.d.name() || p.target != db.d.target() {
		return errorf(ErrStale, "migrate: the plan was not made by Plan on this database")
	}
	return nil
}

// inTx runs fn in a transaction and commits it.
func (db *DB) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := db.pool.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w (a migration may have ended the transaction with COMMIT or ROLLBACK, which migrations must not do)", err)
	}
	return nil
}

// begin takes the lock, checks that the records equal p's and creates the
// record table when needed.
func (db *DB) begin(ctx context.Context, tx *sql.Tx, p *Plan) error {
	if err := db.d.lock(ctx, tx); err != nil {
		return fmt.Errorf("lock %s: %w", TableName, err)
	}
	recs, exists, err := db.records(ctx, tx)
	if err != nil {
		return err
	}
	if !sameRecords(recs, p.Applied) {
		return errorf(ErrStale, "the database's migration records changed since the plan (another runner, or by hand); nothing was applied: plan again")
	}
	if !exists {
		if _, err := tx.ExecContext(ctx, db.d.createTable()); err != nil {
			return fmt.Errorf("create %s: %w", TableName, err)
		}
	}
	return nil
}

// run runs one step in tx and records it. txID, when not "", is the
// transaction's ID that the step must not have changed.
func (db *DB) run(ctx context.Context, tx *sql.Tx, s step, txID, release string, at time.Time) error {
	if _, err := tx.ExecContext(ctx, s.sql); err != nil {
		line, col := db.d.position(err, s.sql)
		return &MigrationError{File: s.file, Line: line, Column: col, Err: err}
	}
	if testHook != nil {
		testHook(s.file)
	}
	if txID != "" {
		now, err := db.d.txID(ctx, tx)
		if err != nil {
			return err
		}
		if now != txID {
			return &MigrationError{File: s.file, Err: errors.New("it ended the runner's transaction (COMMIT or ROLLBACK in a migration); remove the transaction control from the migration")}
		}
	}
	t := db.d.table()
	var err error
	if s.up != nil {
		var down any
		if s.up.HasDown {
			down = s.up.Down
		}
		a := db.d.arg
		_, err = tx.ExecContext(ctx, "INSERT INTO "+t+" (id, name, checksum, applied_at, release, down_sql) VALUES ("+
			a(1)+", "+a(2)+", "+a(3)+", "+a(4)+", "+a(5)+", "+a(6)+")",
			int64(s.up.ID), s.up.Name, s.up.Checksum, db.d.timeArg(at), release, down)
	} else {
		_, err = tx.ExecContext(ctx, "DELETE FROM "+t+" WHERE id = "+db.d.arg(1), int64(s.id))
	}
	if err != nil {
		return fmt.Errorf("record %s in %s: %w", s.file, TableName, err)
	}
	return nil
}

// Down takes the database down to the migration set toSet (a target
// release's migrations, from Load): it runs the recorded down migrations
// of the applied migrations that toSet lacks, newest first, in one
// transaction, and deletes their records. It refuses, touching nothing,
// drift between toSet and the records (ErrDrift), a recorded migration
// without a down migration (ErrIrreversible), and a migration of toSet the
// database lacks (ErrStale: Down only removes; use Plan and Up). Down
// makes no backup: the engine calls Backup first. Up with a downgrade
// plan does the same within a job.
func (db *DB) Down(ctx context.Context, toSet []Migration) error {
	if err := checkSet(toSet); err != nil {
		return err
	}
	if ok, err := db.d.exists(); err != nil || !ok {
		if err == nil && len(toSet) > 0 {
			err = errorf(ErrStale, "Down: the database has none of the target's migrations applied; Down only takes migrations down")
		}
		return err
	}
	return db.inTx(ctx, func(tx *sql.Tx) error {
		if err := db.d.lock(ctx, tx); err != nil {
			return fmt.Errorf("lock %s: %w", TableName, err)
		}
		recs, _, err := db.records(ctx, tx)
		if err != nil {
			return err
		}
		p, err := makePlan(toSet, recs, PlanOptions{AllowDowngrade: true, Irreversible: true, AllowIrreversible: true})
		if err != nil {
			return err
		}
		if len(p.Pending) > 0 {
			return errorf(ErrStale, "Down: the target's %s is not applied; Down only takes migrations down (use Plan and Up)", p.Pending[0].Name)
		}
		for _, s := range p.steps() {
			if err := db.run(ctx, tx, s, "", "", time.Time{}); err != nil {
				return err
			}
		}
		return nil
	})
}

// Rollback puts the database back exactly as it was when Backup made b,
// and verifies it. It works from b alone (OpenBackup after a restart), and
// is idempotent: safe whether Up never ran, failed halfway, finished, or a
// previous Rollback was interrupted.
//
// SQLite: restores the copy (with the app stopped): copies it next to the
// database, checking its sha256 against the backup's (a damaged backup is
// refused, the database untouched), syncs and quick_checks it, removes the
// database's -wal, -shm and -journal files and renames the copy over the
// database. A backup made with VerifyFingerprint is checked after the
// restore with integrity_check and its Fingerprint too. A database that
// did not exist before is removed, with its -wal, -shm and -journal files.
//
// PostgreSQL: in one transaction, runs the recorded down migrations of the
// migrations recorded since b, newest first, deletes their records (and
// the record table if Up created it), then compares the schema with b's
// (ErrVerify on a difference, with the rollback committed). A committed
// irreversible migration (ErrIrreversible) or downgrade cannot be rolled
// back; nothing is then touched.
func (db *DB) Rollback(ctx context.Context, b *Backup) error {
	if b == nil {
		return errorf(ErrNoBackup, "migrate: Rollback needs the job's backup (OpenBackup)")
	}
	if b.m.Driver != db.d.name() || b.m.Target != db.d.target() {
		return errorf(ErrStale, "the backup in %s is of %s database %s, not of this database; check the [database] configuration", b.dir, b.m.Driver, b.m.Target)
	}
	if s, ok := db.d.(snapshotter); ok {
		return s.restore(ctx, db, b)
	}
	return db.rollbackDowns(ctx, b)
}

// rollbackDowns is Rollback for transactional dialects.
func (db *DB) rollbackDowns(ctx context.Context, b *Backup) error {
	var after []string
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		if err := db.d.lock(ctx, tx); err != nil {
			return fmt.Errorf("lock %s: %w", TableName, err)
		}
		recs, exists, err := db.records(ctx, tx)
		if err != nil {
			return err
		}
		cur := map[int]Applied{}
		for _, r := range recs {
			cur[r.ID] = r
		}
		before := map[int]bool{}
		for _, a := range b.m.Applied {
			before[a.ID] = true
			r, ok := cur[a.ID]
			switch {
			case !ok && slices.ContainsFunc(b.m.Extra, func(x planned) bool { return x.ID == a.ID }):
				return errorf(ErrIrreversible, "cannot roll back: the job took %s down (a downgrade), which cannot be undone on %s; restore the database from your own backup", a.Name, db.d.name())
			case !ok || r.Checksum != a.Checksum:
				return errorf(ErrStale, "cannot roll back: migration %s, recorded before the job, was removed or changed since; nothing was changed", a.Name)
			}
		}
		pending := map[int]string{}
		for _, m := range b.m.Pending {
			pending[m.ID] = m.Checksum
		}
		var undo []Applied
		for _, r := range recs {
			if before[r.ID] {
				continue
			}
			if sum, ok := pending[r.ID]; !ok || sum != r.Checksum {
				return errorf(ErrStale, "cannot roll back: migration %s was recorded by something other than this job; nothing was changed", r.Name)
			}
			if !r.HasDown {
				return errorf(ErrIrreversible, "cannot roll back: %s was applied without a down migration (the bundle is irreversible); nothing was changed: restore the database from your own backup", r.Name)
			}
			undo = append(undo, r)
		}
		slices.Reverse(undo)
		p := &Plan{Extra: undo}
		for _, s := range p.steps() {
			if err := db.run(ctx, tx, s, "", "", time.Time{}); err != nil {
				return err
			}
		}
		if exists && !b.m.TableExisted {
			if _, err := tx.ExecContext(ctx, "DROP TABLE "+db.d.table()); err != nil {
				return fmt.Errorf("drop %s: %w", TableName, err)
			}
		}
		after, err = db.d.schema(ctx, tx)
		return err
	})
	if err != nil {
		return err
	}
	if d := diffLines(b.m.Schema, after); len(d) > 0 {
		return errorf(ErrVerify, "the down migrations ran, but the schema differs from before the upgrade (%d differences: %s); have support compare the database with the previous release", len(d), strings.Join(d[:min(len(d), 5)], "; "))
	}
	return nil
}

// diffLines returns the lines only in a ("-line") or only in b ("+line");
// both are sorted.
func diffLines(a, b []string) []string {
	var d []string
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j == len(b) || i < len(a) && a[i] < b[j]:
			d = append(d, "-"+a[i])
			i++
		case i == len(a) || b[j] < a[i]:
			d = append(d, "+"+b[j])
			j++
		default:
			i++
			j++
		}
	}
	return d
}

// BackupSize returns about how many bytes Backup will write, for the
// engine's free-disk check in preflight: a SQLite database's file sizes
// (the database and its -wal, which Backup folds into the database file
// before copying it), 0 for
// PostgreSQL, which Backup does not copy.
func (db *DB) BackupSize() (int64, error) {
	d, ok := db.d.(*sqliteDialect)
	if !ok {
		return 0, nil
	}
	var n int64
	for _, suffix := range []string{"", "-wal"} {
		fi, err := os.Stat(d.path + suffix)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return 0, err
		}
		if err == nil {
			n += fi.Size()
		}
	}
	return n, nil
}

// Fingerprint returns a hash of the database's schema and of every row of
// every user table (the record table included), to check that a restore
// put the database back exactly. It ignores what a restore may
// legitimately change: physical layout (page order, free pages, rowid
// gaps stay), SQLite's journal mode, PostgreSQL sequence positions and
// column order within a table's schema description. A SQLite file that
// does not exist has a fingerprint of its own. It reads every row: its
// cost is that of reading the whole database.
func (db *DB) Fingerprint(ctx context.Context) (string, error) {
	if ok, err := db.d.exists(); err != nil || !ok {
		if err != nil {
			return "", err
		}
		sum := sha256.Sum256([]byte("no database"))
		return hex.EncodeToString(sum[:]), nil
	}
	opts := &sql.TxOptions{ReadOnly: true}
	if _, ok := db.d.(snapshotter); !ok {
		opts.Isolation = sql.LevelRepeatableRead
	}
	tx, err := db.pool.BeginTx(ctx, opts)
	if err != nil {
		return "", err
	}
	defer tx.Rollback() //nolint:errcheck // read-only
	return fingerprint(ctx, db.d, tx)
}

// fingerprint hashes q's database as d sees it.
func fingerprint(ctx context.Context, d dialect, q querier) (string, error) {
	h := sha256.New()
	writeField(h, "dropless migrate fingerprint v1 "+d.name())
	lines, err := d.schema(ctx, q)
	if err != nil {
		return "", fmt.Errorf("fingerprint: schema: %w", err)
	}
	for _, l := range lines {
		writeField(h, l)
	}
	if err := d.rows(ctx, q, h); err != nil {
		return "", fmt.Errorf("fingerprint: rows: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// writeField writes s length-prefixed, so that fields cannot run into
// each other.
func writeField(w io.Writer, s string) {
	var n [binary.MaxVarintLen64]byte
	_, _ = w.Write(n[:binary.PutUvarint(n[:], uint64(len(s)))])
	_, _ = io.WriteString(w, s)
}
