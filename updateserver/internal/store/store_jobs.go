package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/dropless/dropless/pkg/protocol"
)

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

// OpenJob is a site's oldest pending or running job, of any product: the
// one its agent is handed.
type OpenJob struct {
	Job        protocol.Job
	Assignment protocol.Assignment
	// HandedOut: the site's agent was handed the job or reported it.
	HandedOut bool
	// Now: the job was made with --now and ignores windows and freezes.
	Now bool
}

// OpenJob returns the site's oldest pending or running job (of any
// product) as the agent's assignment. A site known to have none is
// answered from memory (store_presence.go); the others' reads, at once
// with other check-ins', are read together (readBatcher).
func (s *Store) OpenJob(ctx context.Context, site string) (OpenJob, error) {
	gen, seq := s.c.jobGen.Load(), s.c.jobSeq.Load()
	if s.noOpenJob(site) {
		return OpenJob{}, ErrNotFound
	}
	o, found, err := s.c.jobReads.get(ctx, site)
	if err != nil {
		return OpenJob{}, err
	}
	if !found {
		s.c.noJob.Store(site, noJobEntry{gen})
		if s.c.jobSeq.Load() != seq {
			// Jobs were created meanwhile, perhaps for this site, and
			// their entries dropped before this one was stored.
			s.c.noJob.Delete(site)
		}
		return OpenJob{}, ErrNotFound
	}
	return o, nil
}

// openJobs reads the OpenJob of each of sites (at most inChunk) that has
// one, in one query.
func (s *Store) openJobs(ctx context.Context, sites []string) (map[string]OpenJob, error) {
	in, args := inList(sites)
	rows, err := s.query(ctx, `SELECT `+jobColumns+`, target, accept_drift, allow_downgrade, allow_irreversible, handed_out_at IS NOT NULL, now FROM jobs
		WHERE site IN (`+in+`) AND result IN ('pending','running') ORDER BY rowid`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make(map[string]OpenJob, len(sites))
	for rows.Next() {
		var o OpenJob
		a, j := &o.Assignment, &o.Job
		var created string
		var started, ended sql.NullString
		if err := rows.Scan(&j.ID, &j.Site, &j.Product, &j.From, &j.To, &j.Result, &j.Reason, &created, &j.CreatedBy, &started, &ended, &j.EventsDropped,
			&a.Target, &a.AcceptDrift, &a.AllowDowngrade, &a.AllowIrreversible, &o.HandedOut, &o.Now); err != nil {
			return nil, err
		}
		if _, older := out[j.Site]; older {
			continue // the site's oldest came first
		}
		j.CreatedAt, j.StartedAt, j.EndedAt = parseTime(created), nullTime(started), nullTime(ended)
		j.Events = []protocol.Event{}
		a.JobID, a.Product, a.Version, a.From = j.ID, j.Product, j.To, j.From
		out[j.Site] = o
	}
	return out, rows.Err()
}

// JobEnd reads a job's site, result and reason (the other fields of the
// JobRow are zero); ErrNotFound when there is no job with that ID.
func (s *Store) JobEnd(ctx context.Context, id string) (JobRow, error) {
	j := JobRow{ID: id}
	err := s.queryRow(ctx, `SELECT site, result, reason FROM jobs WHERE id = ?`, id).Scan(&j.Site, &j.Result, &j.Reason)
	if errors.Is(err, sql.ErrNoRows) {
		return j, ErrNotFound
	}
	return j, err
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
		err := s.queryRow(ctx, `SELECT created_at, rowid FROM jobs WHERE id = ? AND site = ?`, before, site).Scan(&created, &rowid)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("job %s: %w", before, ErrBadCursor)
		}
		if err != nil {
			return nil, err
		}
		q += ` AND (created_at < ? OR (created_at = ? AND rowid < ?))`
		args = append(args, created, created, rowid)
	}
	rows, err := s.query(ctx, q+` ORDER BY created_at DESC, rowid DESC LIMIT ?`, append(args, limit)...)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanJob)
}

// JobEvents returns a job's events in order: at most MaxJobEvents.
func (s *Store) JobEvents(ctx context.Context, jobID string) ([]protocol.Event, error) {
	rows, err := s.query(ctx, `SELECT seq, state, message, at FROM job_events WHERE job_id = ? ORDER BY seq LIMIT ?`, jobID, MaxJobEvents)
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

// MaxJobEvents is how many events the server keeps of one job: its first
// and its newest. Those in between are dropped and counted
// (protocol.Job.EventsDropped), so that one agent cannot fill the disk.
const MaxJobEvents = 500

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
	if err := tx.QueryRow(`SELECT MAX(seq) FROM (SELECT seq FROM job_events WHERE job_id = ? ORDER BY seq LIMIT ? OFFSET 1) AS dropped`, id, excess).Scan(&through); err != nil {
		return err
	}
	if _, err := tx.Exec(`DELETE FROM job_events WHERE job_id = ? AND seq > (SELECT MIN(seq) FROM job_events WHERE job_id = ?) AND seq <= ?`, id, id, through); err != nil {
		return err
	}
	_, err := tx.Exec(`UPDATE jobs SET events_dropped = events_dropped + ?, events_dropped_through = CASE WHEN events_dropped_through > ? THEN events_dropped_through ELSE ? END WHERE id = ?`, excess, through, through, id)
	return err
}
