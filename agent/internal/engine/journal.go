package engine

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/dropless/dropless/pkg/protocol"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// JournalName is the journal's file name inside the data dir.
const JournalName = "journal.db"

// The journal is SQLite in WAL mode with synchronous=FULL: a COMMIT returns
// only after the WAL was fsynced, so every committed transition survives a
// power loss. That COMMIT is the "sync" that must happen before each
// step's action. Write transactions take the write lock up front (BEGIN
// IMMEDIATE) so that a second writer (the events sender, `updateagent
// status` never writes) waits instead of failing.
type journal struct {
	db  *sql.DB
	now func() time.Time
	// fault, when set, is asked before each write (see Config.JournalFault).
	fault func(what string) error
	// readV1 is set on a read-only journal of schema 1 (another process,
	// e.g. `status` after an upgrade before the service restarted): it
	// has no assignment column yet.
	readV1 bool
}

// selectJob is the SELECT of a job row, for this journal's schema.
func (j *journal) selectJob() string {
	if j.readV1 {
		return "SELECT " + strings.Replace(jobColumns, "assignment", "'' AS assignment", 1)
	}
	return "SELECT " + jobColumns
}

// check asks the fault hook, if any, whether the write what may go ahead.
func (j *journal) check(what string) error {
	if j.fault == nil {
		return nil
	}
	return j.fault(what)
}

// schema holds the journal's schema steps: schema[i] takes user_version i
// to i+1. Released steps are never edited, only appended to.
var schema = []string{
	// 1: jobs, their events, and site facts.
	`
CREATE TABLE jobs (
	id              TEXT PRIMARY KEY,
	product         TEXT NOT NULL,
	from_version    TEXT NOT NULL,            -- installed when the job began ('' on a fresh site)
	to_version      TEXT NOT NULL,
	target          TEXT NOT NULL,            -- TUF target path
	state           INTEGER NOT NULL,         -- see state.go; values never change meaning
	result          TEXT NOT NULL DEFAULT '', -- '' while unfinished, else protocol.Result*
	reason          TEXT NOT NULL DEFAULT '', -- why it failed or rolled back
	attempts        INTEGER NOT NULL DEFAULT 0, -- recoveries after an interruption
	sha256          TEXT NOT NULL DEFAULT '', -- of the bundle, as the fetcher verified it
	length          INTEGER NOT NULL DEFAULT 0,
	prev_link       TEXT NOT NULL DEFAULT '', -- what current pointed at before (set at stopping)
	release_created INTEGER NOT NULL DEFAULT 0, -- staging created releases/<to_version>
	seq             INTEGER NOT NULL DEFAULT 0, -- seq of the job's last event
	created_at      INTEGER NOT NULL,         -- unix nanoseconds
	updated_at      INTEGER NOT NULL,
	ended_at        INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX jobs_unfinished ON jobs (result) WHERE result = '';
CREATE TABLE events (
	id        INTEGER PRIMARY KEY AUTOINCREMENT,
	job_id    TEXT NOT NULL REFERENCES jobs (id),
	seq       INTEGER NOT NULL,
	state     INTEGER NOT NULL,
	message   TEXT NOT NULL DEFAULT '',
	at        INTEGER NOT NULL,
	delivered INTEGER NOT NULL DEFAULT 0,
	UNIQUE (job_id, seq)
);
CREATE INDEX events_pending ON events (id) WHERE delivered = 0;
CREATE TABLE site (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
);
`,
	// 2: the assignment as the server made it (JSON of protocol.Assignment),
	// so that Recover can run an interrupted job again with the same
	// flags (accept_drift, allow_downgrade, allow_irreversible).
	`
ALTER TABLE jobs ADD COLUMN assignment TEXT NOT NULL DEFAULT '';
`,
}

// Keys of the site table.
const (
	keyInstalled  = "installed_version" // passed its health check and runs
	keySiteFailed = "site_failed"       // a rollback failed: the reason; cleared by the next success
	keyDrift      = "drift"             // the running release's drift (CheckDrift): a JSON array of lines, "" for none
)

var (
	// ErrUnfinished is returned by Run while another job is unfinished
	// (call Recover first, on start).
	ErrUnfinished = errors.New("another job is unfinished")
	// ErrJournal is matched (errors.Is) by a failed write of a job's
	// transition (a full disk, an I/O error): the job stopped where the
	// journal shows it, and Recover takes it up once the journal can be
	// written again, as it would after a restart.
	ErrJournal = errors.New("the journal could not be written")
	errNoJob   = errors.New("no such job")
)

func openJournal(ctx context.Context, path string, now func() time.Time, fault func(string) error) (*journal, error) {
	q := url.Values{}
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open journal %s: %w", path, err)
	}
	j := &journal{db: db, now: now, fault: fault}
	if err := j.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open journal %s: %w", path, err)
	}
	return j, nil
}

// openJournalReadOnly opens the journal for another process to read while
// the agent writes it.
func openJournalReadOnly(ctx context.Context, path string) (*journal, error) {
	q := url.Values{}
	q.Set("mode", "ro")
	q.Add("_pragma", "busy_timeout(10000)")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open journal %s: %w", path, err)
	}
	j := &journal{db: db}
	v, err := j.version(ctx)
	if err == nil && v > len(schema) {
		err = fmt.Errorf("journal schema version %d is newer than this agent knows (%d): use the agent that wrote it", v, len(schema))
	}
	j.readV1 = v < 2
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open journal %s: %w", path, err)
	}
	return j, nil
}

func (j *journal) close() error { return j.db.Close() }

func (j *journal) version(ctx context.Context) (int, error) {
	var v int
	err := j.db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v)
	return v, err
}

func (j *journal) migrate(ctx context.Context) error {
	v, err := j.version(ctx)
	if err != nil {
		return err
	}
	if v > len(schema) {
		return fmt.Errorf("journal schema version %d is newer than this agent knows (%d): was the agent downgraded?", v, len(schema))
	}
	for ; v < len(schema); v++ {
		tx, err := j.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, schema[v]); err != nil {
			tx.Rollback()
			return fmt.Errorf("schema step %d: %w", v+1, err)
		}
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", v+1)); err != nil {
			tx.Rollback()
			return err
		}
		if err := tx.Commit(); err != nil {
			return err
		}
	}
	return nil
}

// jobRecord is one row of the jobs table.
type jobRecord struct {
	ID, Product, From, To, Target string
	State                         state
	Result, Reason                string
	Attempts                      int
	SHA256                        string
	Length                        int64
	PrevLink                      string
	ReleaseCreated                bool
	Seq                           int64
	CreatedAt, UpdatedAt, EndedAt time.Time
	// Assign is the assignment the job was created for ("" fields in a
	// journal written before schema 2: see assignment).
	Assign protocol.Assignment
}

// assignment is what the job was asked to do: the stored assignment, its
// identifying fields always those of the record.
func (r *jobRecord) assignment() protocol.Assignment {
	a := r.Assign
	a.JobID, a.Product, a.Version, a.Target = r.ID, r.Product, r.To, r.Target
	if a.From == "" {
		a.From = r.From
	}
	return a
}

func (r *jobRecord) ended() bool { return r.Result != "" }

// status returns the job as the protocol reports it.
func (r *jobRecord) status() protocol.JobStatus {
	return protocol.JobStatus{ID: r.ID, From: r.From, To: r.To, State: r.State.String(), Result: r.Result}
}

const jobColumns = `id, product, from_version, to_version, target, state, result, reason, attempts,
	sha256, length, prev_link, release_created, seq, created_at, updated_at, ended_at, assignment`

type scanner interface{ Scan(...any) error }

func scanJob(row scanner) (*jobRecord, error) {
	var r jobRecord
	var created, updated, ended int64
	var assign string
	err := row.Scan(&r.ID, &r.Product, &r.From, &r.To, &r.Target, &r.State, &r.Result, &r.Reason, &r.Attempts,
		&r.SHA256, &r.Length, &r.PrevLink, &r.ReleaseCreated, &r.Seq, &created, &updated, &ended, &assign)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errNoJob
	}
	if err != nil {
		return nil, err
	}
	r.CreatedAt, r.UpdatedAt = fromNanos(created), fromNanos(updated)
	if assign != "" {
		// Written by us; a row that does not parse keeps the record's
		// own fields (see assignment) and no flags.
		_ = json.Unmarshal([]byte(assign), &r.Assign)
	}
	if ended != 0 {
		r.EndedAt = fromNanos(ended)
	}
	return &r, nil
}

func fromNanos(n int64) time.Time { return time.Unix(0, n).UTC() }

func (j *journal) job(ctx context.Context, id string) (*jobRecord, error) {
	return scanJob(j.db.QueryRowContext(ctx, j.selectJob()+" FROM jobs WHERE id = ?", id))
}

// unfinished returns the unfinished job, or nil.
func (j *journal) unfinished(ctx context.Context) (*jobRecord, error) {
	r, err := scanJob(j.db.QueryRowContext(ctx, j.selectJob()+" FROM jobs WHERE result = '' ORDER BY created_at LIMIT 1"))
	if errors.Is(err, errNoJob) {
		return nil, nil
	}
	return r, err
}

// lastEnded returns the job that ended last, or nil.
func (j *journal) lastEnded(ctx context.Context) (*jobRecord, error) {
	r, err := scanJob(j.db.QueryRowContext(ctx, j.selectJob()+" FROM jobs WHERE result <> '' ORDER BY ended_at DESC, rowid DESC LIMIT 1"))
	if errors.Is(err, errNoJob) {
		return nil, nil
	}
	return r, err
}

func (j *journal) siteValue(ctx context.Context, key string) (string, error) {
	var v string
	err := j.db.QueryRowContext(ctx, "SELECT value FROM site WHERE key = ?", key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return v, err
}

// createJob inserts rec with its first event, in one transaction that
// also checks no other job is unfinished. COMMIT syncs (see journal).
func (j *journal) createJob(ctx context.Context, rec *jobRecord, message string) error {
	if err := j.check("record job " + rec.ID); err != nil {
		return fmt.Errorf("journal: record job %s: %w", rec.ID, err)
	}
	assign, err := json.Marshal(rec.Assign)
	if err != nil {
		return fmt.Errorf("journal: record job %s: %w", rec.ID, err)
	}
	tx, err := j.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	defer tx.Rollback()
	var other string
	err = tx.QueryRowContext(ctx, "SELECT id FROM jobs WHERE result = '' LIMIT 1").Scan(&other)
	switch {
	case err == nil:
		return fmt.Errorf("job %s cannot start: job %s is unfinished: %w", rec.ID, other, ErrUnfinished)
	case !errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("journal: %w", err)
	}
	now := j.now().UTC()
	r := *rec
	r.Seq = 1
	r.CreatedAt, r.UpdatedAt = now, now
	if r.Result != "" {
		r.EndedAt = now
	}
	_, err = tx.ExecContext(ctx, "INSERT INTO jobs ("+jobColumns+") VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
		r.ID, r.Product, r.From, r.To, r.Target, r.State, r.Result, r.Reason, r.Attempts,
		r.SHA256, r.Length, r.PrevLink, r.ReleaseCreated, r.Seq, now.UnixNano(), now.UnixNano(), nanos(r.EndedAt), string(assign))
	if err != nil {
		return fmt.Errorf("journal: record job %s: %w", r.ID, err)
	}
	if err := insertEvent(ctx, tx, r.ID, r.Seq, r.State, message, now); err != nil {
		return err
	}
	// The COMMIT is the sync: the job exists on disk before anything is
	// downloaded.
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("journal: record job %s: %w", r.ID, err)
	}
	*rec = r
	return nil
}

func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func insertEvent(ctx context.Context, tx *sql.Tx, jobID string, seq int64, s state, message string, at time.Time) error {
	_, err := tx.ExecContext(ctx, "INSERT INTO events (job_id, seq, state, message, at) VALUES (?,?,?,?,?)",
		jobID, seq, s, message, at.UnixNano())
	if err != nil {
		return fmt.Errorf("journal: record event %s/%d: %w", jobID, seq, err)
	}
	return nil
}

// change is one transition of a job: its new state and the event that
// records it, plus whatever else changes with it.
type change struct {
	state   state
	message string           // the event's message
	result  string           // ends the job when set
	reason  string           // stored as the job's reason when set
	edit    func(*jobRecord) // other fields of the job that change with it
	// Site facts written in the same transaction, when non-nil.
	installed, siteFailed, drift *string
}

// transition writes c for rec: the job row, the event (seq+1) and the site
// facts, in one transaction. When transition returns nil the change is on
// disk (synced) and rec reflects it.
func (j *journal) transition(ctx context.Context, rec *jobRecord, c change) error {
	if err := j.check(fmt.Sprintf("job %s to %s", rec.ID, c.state)); err != nil {
		return fmt.Errorf("journal: job %s to %s: %w", rec.ID, c.state, err)
	}
	tx, err := j.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	defer tx.Rollback()
	r := *rec
	// The stored seq, not the in-memory one, is the truth.
	if err := tx.QueryRowContext(ctx, "SELECT seq FROM jobs WHERE id = ?", r.ID).Scan(&r.Seq); err != nil {
		return fmt.Errorf("journal: job %s: %w", r.ID, err)
	}
	now := j.now().UTC()
	r.Seq++
	r.State = c.state
	r.UpdatedAt = now
	if c.reason != "" {
		r.Reason = c.reason
	}
	if c.result != "" {
		r.Result, r.EndedAt = c.result, now
	}
	if c.edit != nil {
		c.edit(&r)
	}
	_, err = tx.ExecContext(ctx, `UPDATE jobs SET state = ?, result = ?, reason = ?, attempts = ?, sha256 = ?, length = ?,
		prev_link = ?, release_created = ?, seq = ?, updated_at = ?, ended_at = ? WHERE id = ?`,
		r.State, r.Result, r.Reason, r.Attempts, r.SHA256, r.Length, r.PrevLink, r.ReleaseCreated, r.Seq,
		now.UnixNano(), nanos(r.EndedAt), r.ID)
	if err != nil {
		return fmt.Errorf("journal: job %s to %s: %w", r.ID, c.state, err)
	}
	if err := insertEvent(ctx, tx, r.ID, r.Seq, r.State, c.message, now); err != nil {
		return err
	}
	for key, v := range map[string]*string{keyInstalled: c.installed, keySiteFailed: c.siteFailed, keyDrift: c.drift} {
		if v == nil {
			continue
		}
		if err := setSiteValue(ctx, tx, key, *v); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("journal: job %s to %s: %w", r.ID, c.state, err)
	}
	*rec = r
	return nil
}

func setSiteValue(ctx context.Context, tx *sql.Tx, key, v string) error {
	if _, err := tx.ExecContext(ctx, "INSERT INTO site (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value", key, v); err != nil {
		return fmt.Errorf("journal: %s: %w", key, err)
	}
	return nil
}

// encodeDrift is the stored form of a drift list: "" for none.
func encodeDrift(d []string) string {
	if len(d) == 0 {
		return ""
	}
	b, _ := json.Marshal(d)
	return string(b)
}

func decodeDrift(s string) ([]string, error) {
	if s == "" {
		return nil, nil
	}
	var d []string
	if err := json.Unmarshal([]byte(s), &d); err != nil {
		return nil, fmt.Errorf("journal: %s: %w", keyDrift, err)
	}
	return d, nil
}

// setDrift records the running release's drift.
func (j *journal) setDrift(ctx context.Context, d []string) error {
	if err := j.check("drift"); err != nil {
		return fmt.Errorf("journal: %s: %w", keyDrift, err)
	}
	tx, err := j.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	defer tx.Rollback()
	if err := setSiteValue(ctx, tx, keyDrift, encodeDrift(d)); err != nil {
		return err
	}
	return tx.Commit()
}

// finish ends a committed job as succeeded, without an event: the
// committed event already said so. COMMIT syncs.
func (j *journal) finish(ctx context.Context, rec *jobRecord) error {
	if err := j.check("finish job " + rec.ID); err != nil {
		return fmt.Errorf("journal: finish job %s: %w", rec.ID, err)
	}
	now := j.now().UTC()
	_, err := j.db.ExecContext(ctx, "UPDATE jobs SET result = ?, updated_at = ?, ended_at = ? WHERE id = ? AND result = ''",
		protocol.ResultSucceeded, now.UnixNano(), now.UnixNano(), rec.ID)
	if err != nil {
		return fmt.Errorf("journal: finish job %s: %w", rec.ID, err)
	}
	rec.Result, rec.UpdatedAt, rec.EndedAt = protocol.ResultSucceeded, now, now
	return nil
}

// bumpAttempts counts one more recovery of the job and returns the count.
// COMMIT syncs, so a crash during the recovery still counts.
func (j *journal) bumpAttempts(ctx context.Context, rec *jobRecord) error {
	if err := j.check(fmt.Sprintf("job %s attempts", rec.ID)); err != nil {
		return fmt.Errorf("journal: job %s: %w", rec.ID, err)
	}
	var n int
	err := j.db.QueryRowContext(ctx, "UPDATE jobs SET attempts = attempts + 1 WHERE id = ? RETURNING attempts", rec.ID).Scan(&n)
	if err != nil {
		return fmt.Errorf("journal: job %s: %w", rec.ID, err)
	}
	rec.Attempts = n
	return nil
}

// events returns the events of one job, by seq; pending only the
// undelivered ones of every job, oldest first.
func (j *journal) events(ctx context.Context, jobID string) ([]protocol.Event, error) {
	return j.queryEvents(ctx, "SELECT job_id, seq, state, message, at FROM events WHERE job_id = ? ORDER BY seq", jobID)
}

func (j *journal) pending(ctx context.Context, limit int) ([]protocol.Event, error) {
	return j.queryEvents(ctx, "SELECT job_id, seq, state, message, at FROM events WHERE delivered = 0 ORDER BY id LIMIT ?", limit)
}

func (j *journal) queryEvents(ctx context.Context, query string, args ...any) ([]protocol.Event, error) {
	rows, err := j.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("journal: events: %w", err)
	}
	defer rows.Close()
	var evs []protocol.Event
	for rows.Next() {
		var ev protocol.Event
		var s state
		var at int64
		if err := rows.Scan(&ev.JobID, &ev.Seq, &s, &ev.Message, &at); err != nil {
			return nil, fmt.Errorf("journal: events: %w", err)
		}
		ev.State, ev.At = s.String(), fromNanos(at)
		evs = append(evs, ev)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("journal: events: %w", err)
	}
	return evs, nil
}

func (j *journal) markDelivered(ctx context.Context, evs []protocol.Event) error {
	if err := j.check("mark events delivered"); err != nil {
		return fmt.Errorf("journal: mark events delivered: %w", err)
	}
	tx, err := j.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	defer tx.Rollback()
	for _, ev := range evs {
		if _, err := tx.ExecContext(ctx, "UPDATE events SET delivered = 1 WHERE job_id = ? AND seq = ?", ev.JobID, ev.Seq); err != nil {
			return fmt.Errorf("journal: mark event %s/%d delivered: %w", ev.JobID, ev.Seq, err)
		}
	}
	return tx.Commit()
}
