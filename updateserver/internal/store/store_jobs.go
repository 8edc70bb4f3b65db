package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
)

// NewJob is a job to create.
type NewJob struct {
	ID, Site, Product, From, To, Target string
	Now, AcceptDrift, AllowDowngrade    bool
	AllowIrreversible                   bool
	CreatedBy                           string
}

// CreateJobs creates jobs in one transaction, in order (the hops of a
// multi-step upgrade run one after the other). A site's pending jobs that
// no agent was handed yet are superseded (failed, with the reason); a job
// an agent has picked up (handed out in a check-in answer, or reported by
// the agent) is a conflict: it runs to its end, as the agent reports it.
// The site's target version becomes its last job's.
func (s *Store) CreateJobs(ctx context.Context, now time.Time, jobs []NewJob, a Audit) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		// Prepared once: a client-wide upgrade runs these a thousand times.
		open, err := tx.Prepare(`SELECT id, result, from_version, to_version, handed_out_at IS NOT NULL FROM jobs WHERE site = ? AND result IN ('pending','running') ORDER BY rowid`)
		if err != nil {
			return err
		}
		defer open.Close()
		supersede, err := tx.Prepare(`UPDATE jobs SET result = 'failed', reason = ?, ended_at = ? WHERE id = ?`)
		if err != nil {
			return err
		}
		defer supersede.Close()
		insert, err := tx.Prepare(`INSERT INTO jobs (id, site, product, from_version, to_version, target, result, now, accept_drift, allow_downgrade, allow_irreversible, created_at, created_by, last_progress_at)
			VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		defer insert.Close()
		target, err := tx.Prepare(`UPDATE sites SET target_version = ? WHERE site = ?`)
		if err != nil {
			return err
		}
		defer target.Close()
		at := formatTime(now)
		cleared := map[string]bool{}
		for _, j := range jobs {
			if !cleared[j.Site] {
				cleared[j.Site] = true
				if err := supersedeOpen(open, supersede, j, at); err != nil {
					return err
				}
			}
			if _, err := insert.Exec(j.ID, j.Site, j.Product, j.From, j.To, j.Target, j.Now, j.AcceptDrift, j.AllowDowngrade, j.AllowIrreversible, at, j.CreatedBy, at); err != nil {
				return err
			}
			if _, err := target.Exec(j.To, j.Site); err != nil {
				return err
			}
		}
		return insertAudit(ctx, tx, now, a)
	})
}

// supersedeOpen fails the site's pending jobs in favour of j, refusing if
// the site's agent has picked one up. It runs inside the transaction that
// creates j: a check-in handing a job out (HandOut) lands either before it
// (and j is refused) or after it (and finds the job superseded).
func supersedeOpen(open, supersede *sql.Stmt, j NewJob, at string) error {
	rows, err := open.Query(j.Site)
	if err != nil {
		return err
	}
	var ids []string
	for rows.Next() {
		var id, result, from, to string
		var handedOut bool
		if err := rows.Scan(&id, &result, &from, &to, &handedOut); err != nil {
			rows.Close()
			return err
		}
		if result == protocol.ResultRunning || handedOut {
			rows.Close()
			if from == "" {
				from = "(nothing)"
			}
			return &conflictError{fmt.Sprintf("site %s is running job %s (%s -> %s): wait for it to end", j.Site, id, from, to)}
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		rows.Close()
		return err
	}
	rows.Close()
	for _, id := range ids {
		if _, err := supersede.Exec("cancelled: superseded by job "+j.ID, at, id); err != nil {
			return err
		}
	}
	return nil
}

// conflictError is an ErrConflict whose text is a whole sentence.
type conflictError struct{ msg string }

func (e *conflictError) Error() string        { return e.msg }
func (e *conflictError) Is(target error) bool { return target == ErrConflict }

const jobColumns = `id, site, product, from_version, to_version, result, reason, created_at, created_by, started_at, ended_at, events_dropped`

func scanJob(r scanner) (protocol.Job, error) {
	var j protocol.Job
	var created string
	var started, ended sql.NullString
	err := r.Scan(&j.ID, &j.Site, &j.Product, &j.From, &j.To, &j.Result, &j.Reason, &created, &j.CreatedBy, &started, &ended, &j.EventsDropped)
	j.CreatedAt = parseTime(created)
	j.StartedAt = nullTime(started)
	j.EndedAt = nullTime(ended)
	j.Events = []protocol.Event{}
	return j, err
}

// OpenJob is a site's first pending or running job: its assignment.
type OpenJob struct {
	Job        protocol.Job
	Assignment protocol.Assignment
	// HandedOut: the site's agent was handed the job or reported it.
	HandedOut bool
}

// OpenJob returns the site's first pending or running job as the agent's
// assignment.
func (s *Store) OpenJob(ctx context.Context, site string) (OpenJob, error) {
	var o OpenJob
	a := &o.Assignment
	row := s.db.QueryRowContext(ctx, `SELECT `+jobColumns+`, target, accept_drift, allow_downgrade, allow_irreversible, handed_out_at IS NOT NULL FROM jobs
		WHERE site = ? AND result IN ('pending','running') ORDER BY rowid LIMIT 1`, site)
	j := &o.Job
	var created string
	var started, ended sql.NullString
	err := row.Scan(&j.ID, &j.Site, &j.Product, &j.From, &j.To, &j.Result, &j.Reason, &created, &j.CreatedBy, &started, &ended, &j.EventsDropped,
		&a.Target, &a.AcceptDrift, &a.AllowDowngrade, &a.AllowIrreversible, &o.HandedOut)
	if errors.Is(err, sql.ErrNoRows) {
		return o, ErrNotFound
	}
	j.CreatedAt, j.StartedAt, j.EndedAt = parseTime(created), nullTime(started), nullTime(ended)
	j.Events = []protocol.Event{}
	a.JobID, a.Product, a.Version, a.From = j.ID, j.Product, j.To, j.From
	return o, err
}

// HandOut records that the site's agent was handed job id (or reported
// it): from now on the job is not superseded. It reports false when the
// job is no longer open (superseded or ended meanwhile): the caller must
// not hand it out.
func (s *Store) HandOut(ctx context.Context, now time.Time, site, id string) (bool, error) {
	ok := false
	err := s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.Exec(`UPDATE jobs SET handed_out_at = COALESCE(handed_out_at, ?) WHERE id = ? AND site = ? AND result IN ('pending','running')`,
			formatTime(now), id, site)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		ok = n == 1
		return err
	})
	return ok, err
}

// ErrBadCursor is returned by SiteJobs for a cursor that is not a job of
// the site.
var ErrBadCursor = errors.New("not a job of this site")

// SiteJobs returns up to limit of a site's jobs, newest first, older than
// job before (all when before is ""), without their events (JobEvents
// reads those, one job at a time).
func (s *Store) SiteJobs(ctx context.Context, site, before string, limit int) ([]protocol.Job, error) {
	q := `SELECT ` + jobColumns + ` FROM jobs WHERE site = ?`
	args := []any{site}
	if before != "" {
		var created string
		var rowid int64
		err := s.db.QueryRowContext(ctx, `SELECT created_at, rowid FROM jobs WHERE id = ? AND site = ?`, before, site).Scan(&created, &rowid)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("job %s: %w", before, ErrBadCursor)
		}
		if err != nil {
			return nil, err
		}
		q += ` AND (created_at < ? OR (created_at = ? AND rowid < ?))`
		args = append(args, created, created, rowid)
	}
	rows, err := s.db.QueryContext(ctx, q+` ORDER BY created_at DESC, rowid DESC LIMIT ?`, append(args, limit)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	jobs := []protocol.Job{}
	for rows.Next() {
		j, err := scanJob(rows)
		if err != nil {
			return nil, err
		}
		jobs = append(jobs, j)
	}
	return jobs, rows.Err()
}

// JobEvents returns a job's events in order: at most MaxJobEvents.
func (s *Store) JobEvents(ctx context.Context, jobID string) ([]protocol.Event, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT seq, state, message, at FROM job_events WHERE job_id = ? ORDER BY seq LIMIT ?`, jobID, MaxJobEvents)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []protocol.Event{}
	for rows.Next() {
		e := protocol.Event{JobID: jobID}
		var at string
		if err := rows.Scan(&e.Seq, &e.State, &e.Message, &at); err != nil {
			return nil, err
		}
		e.At = parseTime(at)
		out = append(out, e)
	}
	return out, rows.Err()
}

// finalResult maps a job's terminal agent state to its result.
func finalResult(state string) string {
	switch state {
	case protocol.StateCommitted:
		return protocol.ResultSucceeded
	case protocol.StateRolledBack:
		return protocol.ResultRolledBack
	case protocol.StateFailed:
		return protocol.ResultFailed
	}
	return ""
}

// MaxJobEvents is how many events the server keeps of one job: its first
// and its newest. Those in between are dropped and counted
// (protocol.Job.EventsDropped), so that one agent cannot fill the disk.
const MaxJobEvents = 500

// AddEvents stores a site's job events, each (job, seq) once, and moves
// each job along: running on its first event, ended on a terminal one
// (the agent's own report of the job it ran wins over what the server
// guessed: a job that timed out and then reports its end ends so). An
// event for a job of another site is ErrNotFound. It returns how many
// events were new.
func (s *Store) AddEvents(ctx context.Context, now time.Time, site string, events []protocol.Event) (int, error) {
	added := 0
	err := s.tx(ctx, func(tx *sql.Tx) error {
		added = 0
		type jobSeen struct {
			through int64 // events up to this seq were dropped by the cap
			moved   bool  // its progress was recorded in this batch
		}
		seen := map[string]*jobSeen{}
		var order []string
		at := formatTime(now)
		for _, e := range events {
			js, ok := seen[e.JobID]
			if !ok {
				js = &jobSeen{}
				var jobSite string
				err := tx.QueryRow(`SELECT site, events_dropped_through FROM jobs WHERE id = ?`, e.JobID).Scan(&jobSite, &js.through)
				if errors.Is(err, sql.ErrNoRows) || (err == nil && jobSite != site) {
					return fmt.Errorf("job %s is not a job of site %s: %w", e.JobID, site, ErrNotFound)
				}
				if err != nil {
					return err
				}
				seen[e.JobID] = js
				order = append(order, e.JobID)
			}
			if e.Seq <= js.through {
				continue // delivered before, and dropped by the cap since
			}
			res, err := tx.Exec(`INSERT OR IGNORE INTO job_events (job_id, seq, state, message, at, received_at) VALUES (?, ?, ?, ?, ?, ?)`,
				e.JobID, e.Seq, e.State, e.Message, formatTime(e.At), at)
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n == 0 {
				continue // delivered before
			}
			added++
			if !js.moved {
				js.moved = true
				if _, err := tx.Exec(`UPDATE jobs SET started_at = CASE WHEN result = 'pending' THEN COALESCE(started_at, ?) ELSE started_at END,
					result = 'running', last_progress_at = ? WHERE id = ? AND result IN ('pending','running')`, formatTime(e.At), at, e.JobID); err != nil {
					return err
				}
			}
			if r := finalResult(e.State); r != "" {
				reason := e.Message
				if r == protocol.ResultRolledBack {
					// Why it rolled back is in the rolling_back event;
					// the rolled_back one says where it landed.
					var why string
					if tx.QueryRow(`SELECT message FROM job_events WHERE job_id = ? AND state = 'rolling_back' ORDER BY seq DESC LIMIT 1`, e.JobID).Scan(&why) == nil && why != "" {
						reason = why + " (" + e.Message + ")"
					}
				}
				if err := endJob(ctx, tx, now, e.JobID, r, reason, true); err != nil {
					return err
				}
				// The agent's check-in may have ended the job before its
				// events arrived: the reason comes with them.
				if r != protocol.ResultSucceeded {
					if _, err := tx.Exec(`UPDATE jobs SET reason = ? WHERE id = ? AND reason = '' AND result = ?`, reason, e.JobID, r); err != nil {
						return err
					}
				}
			}
		}
		for _, id := range order {
			if seen[id].moved {
				if err := trimEvents(tx, id); err != nil {
					return err
				}
			}
		}
		return nil
	})
	return added, err
}

// trimEvents keeps a job's first event and its newest, MaxJobEvents in
// all, and counts the ones it drops.
func trimEvents(tx *sql.Tx, id string) error {
	var n int
	if err := tx.QueryRow(`SELECT COUNT(*) FROM job_events WHERE job_id = ?`, id).Scan(&n); err != nil {
		return err
	}
	excess := n - MaxJobEvents
	if excess <= 0 {
		return nil
	}
	var through int64
	if err := tx.QueryRow(`SELECT MAX(seq) FROM (SELECT seq FROM job_events WHERE job_id = ? ORDER BY seq LIMIT ? OFFSET 1)`, id, excess).Scan(&through); err != nil {
		return err
	}
	if _, err := tx.Exec(`DELETE FROM job_events WHERE job_id = ? AND seq > (SELECT MIN(seq) FROM job_events WHERE job_id = ?) AND seq <= ?`, id, id, through); err != nil {
		return err
	}
	_, err := tx.Exec(`UPDATE jobs SET events_dropped = events_dropped + ?, events_dropped_through = MAX(events_dropped_through, ?) WHERE id = ?`, excess, through, id)
	return err
}

// endJob ends a pending or running job; an ended job stays as it ended,
// except that the agent's own report (byAgent) replaces a "timed out" the
// server concluded without it. The site's next hop (a pending job after
// it) starts its clock when the job succeeds, and is cancelled when it
// does not.
func endJob(ctx context.Context, tx *sql.Tx, now time.Time, id, result, reason string, byAgent bool) error {
	at := formatTime(now)
	res, err := tx.Exec(`UPDATE jobs SET result = ?, reason = CASE WHEN ? = 'succeeded' THEN '' ELSE ? END, ended_at = ?,
		started_at = COALESCE(started_at, ?) WHERE id = ? AND (result IN ('pending','running') OR (? AND result = 'failed' AND reason = ?))`,
		result, result, reason, at, at, id, byAgent, reasonTimedOut)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return nil
	}
	if result == protocol.ResultSucceeded {
		_, err = tx.Exec(`UPDATE jobs SET last_progress_at = ? WHERE site = (SELECT site FROM jobs WHERE id = ?) AND result = 'pending'`, at, id)
		return err
	}
	_, err = tx.Exec(`UPDATE jobs SET result = 'failed', reason = ?, ended_at = ?
		WHERE site = (SELECT site FROM jobs WHERE id = ?) AND result = 'pending' AND rowid > (SELECT rowid FROM jobs WHERE id = ?)`,
		fmt.Sprintf("cancelled: the step before it (%s) ended %s", id, result), at, id, id)
	return err
}

// reasonTimedOut is the reason of a job the sweeper ended.
const reasonTimedOut = "timed out"

// CompleteJob ends a site's job with result, as the site's agent reported
// it in a check-in. A job of another site is ignored.
func (s *Store) CompleteJob(ctx context.Context, now time.Time, site, id, result, reason string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		var jobSite string
		err := tx.QueryRow(`SELECT site FROM jobs WHERE id = ?`, id).Scan(&jobSite)
		if errors.Is(err, sql.ErrNoRows) || (err == nil && jobSite != site) {
			return nil // not this site's job: ignore
		}
		if err != nil {
			return err
		}
		return endJob(ctx, tx, now, id, result, reason, true)
	})
}

// FailStaleJobs fails every open job without progress since before, with
// reason "timed out", and returns their IDs.
func (s *Store) FailStaleJobs(ctx context.Context, now, before time.Time) ([]string, error) {
	var ids []string
	err := s.tx(ctx, func(tx *sql.Tx) error {
		ids = nil
		// A pending hop waiting behind an earlier open job of its site is
		// not stale: its clock starts when the job before it ends.
		rows, err := tx.Query(`SELECT id FROM jobs WHERE result IN ('pending','running') AND last_progress_at < ?
			AND NOT EXISTS (SELECT 1 FROM jobs AS e WHERE e.site = jobs.site AND e.result IN ('pending','running') AND e.rowid < jobs.rowid)`, formatTime(before))
		if err != nil {
			return err
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return err
			}
			ids = append(ids, id)
		}
		rows.Close()
		for _, id := range ids {
			if err := endJob(ctx, tx, now, id, protocol.ResultFailed, reasonTimedOut, false); err != nil {
				return err
			}
		}
		return nil
	})
	return ids, err
}
