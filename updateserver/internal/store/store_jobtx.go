package store

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
)

// JobTx is one write transaction over jobs and their events: small reads
// and writes of rows, with no rules of their own. What happens to a job
// (supersede, hops, timeouts, the moves between pending, running and
// ended, the reason) is decided by package fleet, in Go, inside the
// transaction; the store keeps the rows and makes them durable together.
//
// A JobTx is valid only inside the function given to WithJobs.
type JobTx struct {
	tx    *sql.Tx
	s     *Store
	stmts map[string]*sql.Stmt
	// What the caches learn after the commit: the sites jobs were
	// created for; the sites whose installed version was set.
	created   []string
	installed []string
}

// WithJobs runs fn in one write transaction through the store's writer
// (a savepoint of its group commit): every write fn made is durable when
// WithJobs returns nil, and none is when fn or the commit fails. fn runs
// on the writer's goroutine: it must not block on anything but the
// JobTx, and must not call the store's other write methods. It runs once,
// or again when the whole group met another transaction (PostgreSQL's
// serialization failure or deadlock): it must set, not accumulate, what
// it hands back.
func (s *Store) WithJobs(ctx context.Context, fn func(*JobTx) error) error {
	return s.withJobs(ctx, s.writes, fn)
}

// WithJobsFirst is WithJobs for the few transactions that must not wait
// behind the agents' writes: the writer takes them before the writes
// queued with WithJobs and the store's other write methods, so they wait
// for at most the group being committed. A rollout starting a wave of
// thousands of sites is one: the agents it woke queue their job events
// by the thousand, and its next transaction, behind all of them, waited
// minutes. The hand-outs check-in answers wait for are another.
func (s *Store) WithJobsFirst(ctx context.Context, fn func(*JobTx) error) error {
	return s.withJobs(ctx, s.first, fn)
}

func (s *Store) withJobs(ctx context.Context, q chan *writeReq, fn func(*JobTx) error) error {
	var created, installed []string
	// In the order they came, an operator's too (see Priority), unless
	// q is the first lane.
	err := s.queue(ctx, q, func(tx *sql.Tx) error {
		var err error
		created, installed, err = s.runJobs(tx, fn)
		return err
	})
	s.afterJobs(created, installed)
	return err
}

// runJobs runs fn in tx with a JobTx, and tells the other replicas'
// caches what it changed: the sites it created jobs for (told as it
// creates them) and the sites whose installed version it set.
func (s *Store) runJobs(tx *sql.Tx, fn func(*JobTx) error) (created, installed []string, err error) {
	t := &JobTx{tx: tx, s: s}
	defer t.close()
	err = fn(t)
	created, installed = t.created, t.installed
	if err != nil {
		return created, installed, err
	}
	var items []string
	for _, site := range installed {
		items = append(items, cacheSite+"\t"+site)
	}
	return created, installed, s.tellCaches(tx, items...)
}

// afterJobs updates this process's caches after a job transaction
// (whether it committed or not: a cache dropped costs a read).
func (s *Store) afterJobs(created, installed []string) {
	if len(created) > 0 {
		s.jobsCreated(created)
	}
	for _, site := range installed {
		s.forgetReport(site)
	}
}

// jobsFor records that jobs are created for sites (in order, a site's
// hops next to each other), and tells the other replicas' caches at
// once, before anything else the transaction sends (fleet's wake-ups):
// a replica woken for a new job has dropped the site's "no open job" by
// then, since its bus delivers one notification after the other. Only a
// creation makes a site's "no open job" wrong; a job's start, end or
// progress does not, and tells nobody.
func (t *JobTx) jobsFor(sites ...string) error {
	var items []string
	for i, site := range sites {
		if i > 0 && sites[i-1] == site {
			continue
		}
		t.created = append(t.created, site)
		items = append(items, cacheJobs+"\t"+site)
	}
	return t.s.tellCaches(t.tx, items...)
}

// stmt returns q's statement: the writer's kept one (txStmt), or one
// prepared once per transaction (an upgrade of a client with a thousand
// sites runs the same few statements a thousand times).
func (t *JobTx) stmt(q string) (*sql.Stmt, error) {
	if st, ok := t.stmts[q]; ok {
		return st, nil
	}
	st, kept, err := t.s.txStmt(t.tx, q)
	if err != nil || kept {
		return st, err
	}
	if t.stmts == nil {
		t.stmts = map[string]*sql.Stmt{}
	}
	t.stmts[q] = st
	return st, nil
}

func (t *JobTx) exec(q string, args ...any) error {
	st, err := t.stmt(q)
	if err != nil {
		return err
	}
	_, err = st.Exec(args...)
	return err
}

func (t *JobTx) close() {
	for _, st := range t.stmts {
		st.Close()
	}
}

// JobRow is a job as the rules see it.
type JobRow struct {
	ID, Site, Product string
	// Client is the site's client (not a column of the job).
	Client         string
	From, To       string
	Target         string
	Result, Reason string
	CreatedBy      string
	CreatedAt      time.Time
	StartedAt      *time.Time
	EndedAt        *time.Time
	LastProgressAt time.Time
	// PickedUp: the site's agent was handed the job in a check-in answer,
	// or reported working on it.
	PickedUp bool
	// What support confirmed for the job.
	Now, AcceptDrift, AllowDowngrade, AllowIrreversible bool
	// EventsDroppedThrough: the job's events up to this seq were dropped
	// by the cap (MaxJobEvents).
	EventsDroppedThrough int64
	// RolloutID is the rollout that made the job (0 for none).
	RolloutID int64
}

// Open reports whether the job has not ended.
func (j JobRow) Open() bool {
	return j.Result == protocol.ResultPending || j.Result == protocol.ResultRunning
}

const jobRowColumns = `jobs.id, jobs.site, jobs.product, sites.client, jobs.from_version, jobs.to_version, jobs.target, jobs.result, jobs.reason,
	jobs.created_by, jobs.created_at, jobs.started_at, jobs.ended_at, jobs.last_progress_at, jobs.handed_out_at IS NOT NULL,
	jobs.now, jobs.accept_drift, jobs.allow_downgrade, jobs.allow_irreversible, jobs.events_dropped_through, COALESCE(jobs.rollout_id, 0)
	FROM jobs JOIN sites ON sites.site = jobs.site`

func scanJobRow(r scanner) (JobRow, error) {
	var j JobRow
	var created, progress string
	var started, ended sql.NullString
	err := r.Scan(&j.ID, &j.Site, &j.Product, &j.Client, &j.From, &j.To, &j.Target, &j.Result, &j.Reason,
		&j.CreatedBy, &created, &started, &ended, &progress, &j.PickedUp,
		&j.Now, &j.AcceptDrift, &j.AllowDowngrade, &j.AllowIrreversible, &j.EventsDroppedThrough, &j.RolloutID)
	j.CreatedAt, j.LastProgressAt = parseTime(created), parseTime(progress)
	j.StartedAt, j.EndedAt = nullTime(started), nullTime(ended)
	return j, err
}

func (t *JobTx) jobRows(where string, args ...any) ([]JobRow, error) {
	st, err := t.stmt(`SELECT ` + jobRowColumns + ` WHERE ` + where + ` ORDER BY jobs.rowid`)
	if err != nil {
		return nil, err
	}
	rows, err := st.Query(args...)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanJobRow)
}

// Job returns one job; ErrNotFound when there is none with that ID.
func (t *JobTx) Job(id string) (JobRow, error) {
	st, err := t.stmt(`SELECT ` + jobRowColumns + ` WHERE jobs.id = ?`)
	if err != nil {
		return JobRow{}, err
	}
	j, err := scanJobRow(st.QueryRow(id))
	if errors.Is(err, sql.ErrNoRows) {
		return j, ErrNotFound
	}
	return j, err
}

// OpenJobs returns the site's pending and running jobs of every product,
// oldest first (in the order they were created).
func (t *JobTx) OpenJobs(site string) ([]JobRow, error) {
	return t.jobRows(`jobs.site = ? AND jobs.result IN ('pending','running')`, site)
}

// OpenJobsIdleSince returns the pending and running jobs of every site
// whose last progress is older than before, oldest first.
func (t *JobTx) OpenJobsIdleSince(before time.Time) ([]JobRow, error) {
	return t.jobRows(`jobs.result IN ('pending','running') AND jobs.last_progress_at < ?`, formatTime(before))
}

// Site returns one site as the transaction sees it.
func (t *JobTx) Site(site string) (protocol.Site, error) {
	st, err := t.stmt(`SELECT ` + siteColumns + ` FROM sites WHERE site = ?`)
	if err != nil {
		return protocol.Site{}, err
	}
	s, err := t.s.scanSite(st.QueryRow(site))
	if errors.Is(err, sql.ErrNoRows) {
		return s, ErrNotFound
	}
	return s, err
}

// NewJob is a job to create: pending, its clock (last progress) started.
type NewJob struct {
	ID, Site, Product, From, To, Target string
	Now, AcceptDrift, AllowDowngrade    bool
	AllowIrreversible                   bool
	CreatedBy                           string
	// RolloutID is the rollout that makes the job (0 for none).
	RolloutID int64
	// HandedOut: the job is handed out as it is created (its site's
	// long-poll, held here, answers with it once the job commits): as
	// PickUp right after the insert, without a second write of the row.
	HandedOut bool
}

// InsertJob creates a pending job at now.
func (t *JobTx) InsertJob(j NewJob, now time.Time) error {
	return t.InsertJobs([]NewJob{j}, now)
}

// jobsPerInsert is how many jobs one INSERT of InsertJobs holds (15
// values each).
const jobsPerInsert = 64

// InsertJobs creates pending jobs at now, in order, a few statements for
// all (multi-row INSERTs).
func (t *JobTx) InsertJobs(js []NewJob, now time.Time) error {
	if len(js) == 0 {
		return nil
	}
	sites := make([]string, len(js))
	for i, j := range js {
		sites[i] = j.Site
	}
	if err := t.jobsFor(sites...); err != nil {
		return err
	}
	at := formatTime(now)
	const row = "(?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?)"
	for i := 0; i < len(js); i += jobsPerInsert {
		part := js[i:min(i+jobsPerInsert, len(js))]
		args := make([]any, 0, 15*len(part))
		for _, j := range part {
			var rollout sql.NullInt64
			if j.RolloutID != 0 {
				rollout = sql.NullInt64{Int64: j.RolloutID, Valid: true}
			}
			handedOut := sql.NullString{String: at, Valid: j.HandedOut}
			args = append(args, j.ID, j.Site, j.Product, j.From, j.To, j.Target, j.Now, j.AcceptDrift, j.AllowDowngrade, j.AllowIrreversible, at, j.CreatedBy, at, rollout, handedOut)
		}
		q := `INSERT INTO jobs (id, site, product, from_version, to_version, target, result, now, accept_drift, allow_downgrade, allow_irreversible, created_at, created_by, last_progress_at, rollout_id, handed_out_at)
		VALUES ` + row + strings.Repeat(", "+row, len(part)-1)
		if err := t.exec(q, args...); err != nil {
			return err
		}
	}
	return nil
}

// SetTargetVersions is SetTargetVersion of many sites to one version, in
// a few statements.
func (t *JobTx) SetTargetVersions(version string, sites []string) error {
	return chunks(sites, func(part []string) error {
		in, args := inList(part)
		return t.exec(`UPDATE sites SET target_version = ? WHERE site IN (`+in+`)`, append([]any{version}, args...)...)
	})
}

// SetTargetVersion records the version support assigned to the site's
// product.
func (t *JobTx) SetTargetVersion(site, version string) error {
	return t.exec(`UPDATE sites SET target_version = ? WHERE site = ?`, version, site)
}

// EndJob records a job's end: its result, reason and end time (and a
// start time, the end's, if it never started).
func (t *JobTx) EndJob(id, result, reason string, now time.Time) error {
	at := formatTime(now)
	return t.exec(`UPDATE jobs SET result = ?, reason = ?, ended_at = ?, started_at = COALESCE(started_at, ?) WHERE id = ?`,
		result, reason, at, at, id)
}

// StartJob marks a job running, started at startedAt unless it had a
// start already, and restarts its clock: its last progress is now (one
// statement for what Progress would do after).
func (t *JobTx) StartJob(id string, startedAt, now time.Time) error {
	return t.exec(`UPDATE jobs SET result = 'running', started_at = COALESCE(started_at, ?), last_progress_at = ? WHERE id = ?`,
		formatTime(startedAt), formatTime(now), id)
}

// PickUp records that the site's agent has the job (handed out, or
// reported on), at now unless recorded before.
func (t *JobTx) PickUp(id string, now time.Time) error {
	return t.exec(`UPDATE jobs SET handed_out_at = COALESCE(handed_out_at, ?) WHERE id = ?`, formatTime(now), id)
}

// Progress restarts a job's clock: its last progress is now.
func (t *JobTx) Progress(id string, now time.Time) error {
	return t.exec(`UPDATE jobs SET last_progress_at = ? WHERE id = ?`, formatTime(now), id)
}

// SetReason replaces a job's reason.
func (t *JobTx) SetReason(id, reason string) error {
	return t.exec(`UPDATE jobs SET reason = ? WHERE id = ?`, reason, id)
}

// AddEvent stores one event of a job, received at now; it reports false
// when (job, seq) was stored before.
func (t *JobTx) AddEvent(e protocol.Event, now time.Time) (bool, error) {
	st, err := t.stmt(`INSERT INTO job_events (job_id, seq, state, message, at, received_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`)
	if err != nil {
		return false, err
	}
	res, err := st.Exec(e.JobID, e.Seq, e.State, e.Message, formatTime(e.At), formatTime(now))
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// LastEventMessage returns the message of the job's newest event in
// state ("" when there is none).
func (t *JobTx) LastEventMessage(id, state string) (string, error) {
	st, err := t.stmt(`SELECT message FROM job_events WHERE job_id = ? AND state = ? ORDER BY seq DESC LIMIT 1`)
	if err != nil {
		return "", err
	}
	var msg string
	err = st.QueryRow(id, state).Scan(&msg)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return msg, err
}

// TrimEvents applies the cap: it keeps a job's first event and its
// newest, MaxJobEvents in all, and counts the ones it drops.
func (t *JobTx) TrimEvents(id string) error {
	// Counted first with a kept statement: a job rarely has more.
	st, err := t.stmt(`SELECT COUNT(*) FROM job_events WHERE job_id = ?`)
	if err != nil {
		return err
	}
	var n int
	if err := st.QueryRow(id).Scan(&n); err != nil || n <= MaxJobEvents {
		return err
	}
	return trimEvents(t.tx, id)
}

// Audit records a change in the audit log, in this transaction.
func (t *JobTx) Audit(now time.Time, a Audit) error {
	return insertAudit(context.Background(), t.tx, now, a)
}

// Exec runs one statement in the transaction, for what must commit or
// roll back with the job changes but is no row of the store's: the
// replicas' bus sends its notifications so (package bus).
func (t *JobTx) Exec(q string, args ...any) error { return t.exec(q, args...) }

// inChunk is how many values one IN (...) list of a batched read or write
// holds: well below SQLite's and PostgreSQL's limits on parameters.
const inChunk = 500

// inList returns "?, ?, ..." for n values, and the values as arguments.
func inList(vals []string) (string, []any) {
	args := make([]any, len(vals))
	for i, v := range vals {
		args[i] = v
	}
	return strings.Repeat("?, ", len(vals)-1) + "?", args
}

// chunks calls fn with vals in slices of at most inChunk.
func chunks(vals []string, fn func([]string) error) error {
	for i := 0; i < len(vals); i += inChunk {
		if err := fn(vals[i:min(i+inChunk, len(vals))]); err != nil {
			return err
		}
	}
	return nil
}

// OpenJobsOf returns OpenJobs of each of sites, read in a few queries
// (one per inChunk sites) instead of one per site: a site without open
// jobs has none in the map.
func (t *JobTx) OpenJobsOf(sites []string) (map[string][]JobRow, error) {
	out := make(map[string][]JobRow, len(sites))
	err := chunks(sites, func(part []string) error {
		in, args := inList(part)
		rows, err := t.jobRows(`jobs.site IN (`+in+`) AND jobs.result IN ('pending','running')`, args...)
		for _, j := range rows {
			out[j.Site] = append(out[j.Site], j)
		}
		return err
	})
	return out, err
}

// SiteOwner is whose a site is and what it runs: what a job's creation
// needs of its site.
type SiteOwner struct{ Client, Product string }

// OwnersOf returns the named sites' clients and products as the
// transaction sees them, read in a few queries; a site not enrolled is
// not in the map. A client-wide upgrade reads 10,000 sites here, in its
// transaction: their other columns (times to parse, drift to decode)
// were half of it.
func (t *JobTx) OwnersOf(names []string) (map[string]SiteOwner, error) {
	return ownersIn(names, func(q string, args ...any) (*sql.Rows, error) {
		st, err := t.stmt(q)
		if err != nil {
			return nil, err
		}
		return st.Query(args...)
	})
}

// ownersIn reads the named sites' owners with query, in a few queries.
func ownersIn(names []string, query func(q string, args ...any) (*sql.Rows, error)) (map[string]SiteOwner, error) {
	out := make(map[string]SiteOwner, len(names))
	err := chunks(names, func(part []string) error {
		in, args := inList(part)
		rows, err := query(`SELECT site, client, product FROM sites WHERE site IN (`+in+`)`, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var site string
			var o SiteOwner
			if err := rows.Scan(&site, &o.Client, &o.Product); err != nil {
				return err
			}
			out[site] = o
		}
		return rows.Err()
	})
	return out, err
}

// PickUpAll is PickUp of many jobs in a few statements.
func (t *JobTx) PickUpAll(ids []string, now time.Time) error {
	return chunks(ids, func(part []string) error {
		in, args := inList(part)
		return t.exec(`UPDATE jobs SET handed_out_at = COALESCE(handed_out_at, ?) WHERE id IN (`+in+`)`, append([]any{formatTime(now)}, args...)...)
	})
}
