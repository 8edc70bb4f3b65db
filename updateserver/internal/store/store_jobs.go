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
// multi-step upgrade run one after the other). A site's pending jobs are
// superseded (failed, with the reason); a running one is a conflict. The
// site's target version becomes its last job's.
func (s *Store) CreateJobs(ctx context.Context, now time.Time, jobs []NewJob, a Audit) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		// Prepared once: a client-wide upgrade runs these a thousand times.
		open, err := tx.Prepare(`SELECT id, result FROM jobs WHERE site = ? AND result IN ('pending','running') ORDER BY rowid`)
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
// one is running.
func supersedeOpen(open, supersede *sql.Stmt, j NewJob, at string) error {
	rows, err := open.Query(j.Site)
	if err != nil {
		return err
	}
	var ids []string
	for rows.Next() {
		var id, result string
		if err := rows.Scan(&id, &result); err != nil {
			rows.Close()
			return err
		}
		if result == protocol.ResultRunning {
			rows.Close()
			return fmt.Errorf("site %s is upgrading now (job %s): wait for it to end: %w", j.Site, id, ErrConflict)
		}
		ids = append(ids, id)
	}
	rows.Close()
	for _, id := range ids {
		if _, err := supersede.Exec("cancelled: superseded by job "+j.ID, at, id); err != nil {
			return err
		}
	}
	return nil
}

const jobColumns = `id, site, product, from_version, to_version, result, reason, created_at, created_by, started_at, ended_at`

func scanJob(r scanner) (protocol.Job, error) {
	var j protocol.Job
	var created string
	var started, ended sql.NullString
	err := r.Scan(&j.ID, &j.Site, &j.Product, &j.From, &j.To, &j.Result, &j.Reason, &created, &j.CreatedBy, &started, &ended)
	j.CreatedAt = parseTime(created)
	j.StartedAt = nullTime(started)
	j.EndedAt = nullTime(ended)
	j.Events = []protocol.Event{}
	return j, err
}

// OpenJob returns the site's first pending or running job as the agent's
// assignment.
func (s *Store) OpenJob(ctx context.Context, site string) (protocol.Job, protocol.Assignment, error) {
	var a protocol.Assignment
	row := s.db.QueryRowContext(ctx, `SELECT `+jobColumns+`, target, accept_drift, allow_downgrade, allow_irreversible FROM jobs
		WHERE site = ? AND result IN ('pending','running') ORDER BY rowid LIMIT 1`, site)
	var j protocol.Job
	var created string
	var started, ended sql.NullString
	err := row.Scan(&j.ID, &j.Site, &j.Product, &j.From, &j.To, &j.Result, &j.Reason, &created, &j.CreatedBy, &started, &ended, &a.Target, &a.AcceptDrift, &a.AllowDowngrade, &a.AllowIrreversible)
	if errors.Is(err, sql.ErrNoRows) {
		return j, a, ErrNotFound
	}
	j.CreatedAt, j.StartedAt, j.EndedAt = parseTime(created), nullTime(started), nullTime(ended)
	a.JobID, a.Product, a.Version, a.From = j.ID, j.Product, j.To, j.From
	return j, a, err
}

// SiteJobs returns a site's jobs, newest first, with their events.
func (s *Store) SiteJobs(ctx context.Context, site string, limit int) ([]protocol.Job, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+jobColumns+` FROM jobs WHERE site = ? ORDER BY created_at DESC, rowid DESC LIMIT ?`, site, limit)
	if err != nil {
		return nil, err
	}
	jobs := []protocol.Job{}
	for rows.Next() {
		j, err := scanJob(rows)
		if err != nil {
			rows.Close()
			return nil, err
		}
		jobs = append(jobs, j)
	}
	rows.Close()
	for i := range jobs {
		if jobs[i].Events, err = s.jobEvents(ctx, jobs[i].ID); err != nil {
			return nil, err
		}
	}
	return jobs, nil
}

func (s *Store) jobEvents(ctx context.Context, jobID string) ([]protocol.Event, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT seq, state, message, at FROM job_events WHERE job_id = ? ORDER BY seq`, jobID)
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

// AddEvents stores a site's job events, each (job, seq) once, and moves
// each job along: running on its first event, ended on a terminal one. An
// event for a job of another site is ErrNotFound. It returns how many
// events were new.
func (s *Store) AddEvents(ctx context.Context, now time.Time, site string, events []protocol.Event) (int, error) {
	added := 0
	err := s.tx(ctx, func(tx *sql.Tx) error {
		added = 0
		owner := map[string]bool{}
		for _, e := range events {
			if _, ok := owner[e.JobID]; !ok {
				var jobSite string
				err := tx.QueryRow(`SELECT site FROM jobs WHERE id = ?`, e.JobID).Scan(&jobSite)
				if errors.Is(err, sql.ErrNoRows) || (err == nil && jobSite != site) {
					return fmt.Errorf("job %s is not a job of site %s: %w", e.JobID, site, ErrNotFound)
				}
				if err != nil {
					return err
				}
				owner[e.JobID] = true
			}
			res, err := tx.Exec(`INSERT OR IGNORE INTO job_events (job_id, seq, state, message, at, received_at) VALUES (?, ?, ?, ?, ?, ?)`,
				e.JobID, e.Seq, e.State, e.Message, formatTime(e.At), formatTime(now))
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n == 0 {
				continue // delivered before
			}
			added++
			if _, err := tx.Exec(`UPDATE jobs SET result = 'running', started_at = COALESCE(started_at, ?), last_progress_at = ?
				WHERE id = ? AND result = 'pending'`, formatTime(e.At), formatTime(now), e.JobID); err != nil {
				return err
			}
			if _, err := tx.Exec(`UPDATE jobs SET last_progress_at = ? WHERE id = ? AND result = 'running'`, formatTime(now), e.JobID); err != nil {
				return err
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
				if err := endJob(ctx, tx, now, e.JobID, r, reason); err != nil {
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
		return nil
	})
	return added, err
}

// endJob ends a pending or running job; an ended job stays as it ended.
// The site's next hop (a pending job after it) starts its clock when the
// job succeeds, and is cancelled when it does not.
func endJob(ctx context.Context, tx *sql.Tx, now time.Time, id, result, reason string) error {
	at := formatTime(now)
	res, err := tx.Exec(`UPDATE jobs SET result = ?, reason = CASE WHEN ? = 'succeeded' THEN '' ELSE ? END, ended_at = ?,
		started_at = COALESCE(started_at, ?) WHERE id = ? AND result IN ('pending','running')`,
		result, result, reason, at, at, id)
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

// CompleteJob ends a site's job with result (from the agent's check-in).
func (s *Store) CompleteJob(ctx context.Context, now time.Time, site, id, result, reason string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		var jobSite string
		if err := tx.QueryRow(`SELECT site FROM jobs WHERE id = ?`, id).Scan(&jobSite); err != nil || jobSite != site {
			return nil // not this site's job: ignore
		}
		return endJob(ctx, tx, now, id, result, reason)
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
			rows.Scan(&id)
			ids = append(ids, id)
		}
		rows.Close()
		for _, id := range ids {
			if err := endJob(ctx, tx, now, id, protocol.ResultFailed, "timed out"); err != nil {
				return err
			}
		}
		return nil
	})
	return ids, err
}
