package store

import (
	"context"
	"database/sql"
	"strings"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
)

// Job transactions applied together: the agents' job-event reports of a
// trigger round arrive by the thousand at once, and as one transaction
// each (a dozen statements: read the job, insert the events, update the
// job, trim, notifications) they were the writer's limit: ~200 reports a
// second on PostgreSQL, and the next upgrade waited behind all of them.
//
// A JobBatch names a kind of job transaction whose many instances can be
// applied by one function, in a handful of statements for all of them
// (multi-row reads and writes). WithJobsBatched queues one instance (an
// item) in the writer's ordinary lane, in order with every other write:
// the writer hands the items queued one after the other to the batch's
// Apply together, in one savepoint of its group. Two items with the same
// key (a site) are never in one call: the second starts the next one, so
// that Apply may treat the items as independent of each other.
//
// Each item keeps its own fn, the same transaction as WithJobs would run:
// when Apply fails as a whole, its changes are rolled back and each item
// runs alone, in a savepoint of its own, so that one item's failure is
// its own. An item's caller is answered only once its group committed.

// JobBatch is a kind of job transaction the writer applies many of at
// once (WithJobsBatched).
type JobBatch struct {
	// Apply applies items, in order, in t: each item's error (nil: its
	// changes are made; non-nil: none of them is, and the caller gets
	// it), or err: nothing may be kept, and each item runs alone (its
	// fn). Like any job transaction it may run again and must set, not
	// accumulate, what it hands back in the items.
	Apply func(t *JobTx, items []any) (errs []error, err error)
}

// maxBatch bounds the items of one Apply: a batch is one write the
// writer cannot cut at groupTime, and 250 reports a batch went as fast
// as 1000 (BenchmarkJobReports2000).
const maxBatch = 250

// WithJobsBatched is WithJobs(ctx, fn) for a transaction of kind b: the
// writer may apply item together with the items of b queued just before
// and after it (b.Apply) instead of running fn. key names what two items
// must not share in one Apply (their site).
func (s *Store) WithJobsBatched(ctx context.Context, b *JobBatch, key string, item any, fn func(*JobTx) error) error {
	var created, installed []string
	r := &writeReq{ctx: ctx, done: make(chan error, 1), batch: b, key: key, item: item}
	r.fn = func(tx *sql.Tx) error {
		var err error
		created, installed, err = s.runJobs(tx, fn)
		return err
	}
	select {
	case s.writes <- r:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.quit:
		return ErrClosed
	}
	err := <-r.done
	s.afterJobs(created, installed)
	return err
}

// batches merges the runs of group's items of one JobBatch, queued one
// after the other, into one write each (batchWrite): group's order is
// kept.
func (s *Store) batches(group []*writeReq) []*writeReq {
	out := group[:0:0]
	for i := 0; i < len(group); {
		r := group[i]
		if r.batch == nil {
			out = append(out, r)
			i++
			continue
		}
		keys := map[string]bool{r.key: true}
		j := i + 1
		for j < len(group) && j-i < maxBatch && group[j].batch == r.batch && !keys[group[j].key] {
			keys[group[j].key] = true
			j++
		}
		// One item alone too: Apply is its one way, its fn the fallback.
		out = append(out, s.batchWrite(group[i:j:j]))
		i = j
	}
	return out
}

// batchWrite is the one write of items, of one JobBatch: their Apply in
// a savepoint, or (when Apply fails) each item's fn in a savepoint of its
// own. It answers each item (answer) once its group committed.
func (s *Store) batchWrite(items []*writeReq) *writeReq {
	b := items[0].batch
	results := make([]error, len(items))
	var created, installed []string
	w := &writeReq{ctx: context.Background(), done: make(chan error, 1)}
	w.fn = func(tx *sql.Tx) error {
		created, installed = nil, nil
		var live []int
		var vals []any
		for i, r := range items {
			results[i] = r.ctx.Err() // an item whose caller is gone is not run
			if results[i] == nil {
				live = append(live, i)
				vals = append(vals, r.item)
			}
		}
		if len(live) == 0 {
			return nil
		}
		if err := s.savepoint(tx, `SAVEPOINT b`); err != nil {
			return err
		}
		var errs []error
		o, in, err := s.runJobs(tx, func(t *JobTx) error {
			var err error
			errs, err = b.Apply(t, vals)
			return err
		})
		if err == nil {
			created, installed = o, in
			for k, i := range live {
				results[i] = errs[k]
			}
			return s.savepoint(tx, `RELEASE b`)
		}
		if retryable(err) {
			return err
		}
		if err := s.savepoint(tx, `ROLLBACK TO b`); err != nil {
			return err
		}
		// Each alone: its fn, in the savepoint b.
		for _, i := range live {
			results[i] = items[i].fn(tx)
			if retryable(results[i]) {
				return results[i]
			}
			if results[i] == nil {
				// On PostgreSQL a statement that failed (its error
				// ignored) leaves the transaction aborted: the release
				// fails, and the item is rolled back like a failed one.
				if results[i] = s.savepoint(tx, `RELEASE b`, `SAVEPOINT b`); results[i] == nil {
					continue
				}
			}
			if err := s.savepoint(tx, `ROLLBACK TO b`); err != nil {
				return err
			}
		}
		return s.savepoint(tx, `RELEASE b`)
	}
	w.answer = func(err error) {
		if err == nil {
			s.afterJobs(created, installed)
		}
		for i, r := range items {
			if err != nil {
				r.done <- err
			} else {
				r.done <- results[i]
			}
		}
	}
	return w
}

// JobsOf returns the named jobs as the transaction sees them, read in a
// few queries; a job that does not exist is not in the map.
func (t *JobTx) JobsOf(ids []string) (map[string]JobRow, error) {
	out := make(map[string]JobRow, len(ids))
	err := chunks(ids, func(part []string) error {
		in, args := inList(part)
		rows, err := t.tx.Query(`SELECT `+jobRowColumns+` WHERE jobs.id IN (`+in+`)`, args...)
		if err != nil {
			return err
		}
		js, err := collect(rows, scanJobRow)
		for _, j := range js {
			out[j.ID] = j
		}
		return err
	})
	return out, err
}

// NewEvent is an event of a job to store, received at ReceivedAt.
type NewEvent struct {
	protocol.Event
	ReceivedAt time.Time
}

// EventKey names a stored event: its job and seq.
type EventKey struct {
	JobID string
	Seq   int64
}

// eventsPerInsert is how many events one INSERT of AddEvents holds on
// SQLite (6 values each).
const eventsPerInsert = 100

// AddEvents is AddEvent of many events in a few statements: it returns
// the events it stored, those whose (job, seq) was not stored before.
// Each (job, seq) must be in evs at most once.
func (t *JobTx) AddEvents(evs []NewEvent) (map[EventKey]bool, error) {
	added := make(map[EventKey]bool, len(evs))
	scan := func(rows *sql.Rows, err error) error {
		if err != nil {
			return err
		}
		keys, err := collect(rows, func(r scanner) (EventKey, error) {
			var k EventKey
			return k, r.Scan(&k.JobID, &k.Seq)
		})
		for _, k := range keys {
			added[k] = true
		}
		return err
	}
	if len(evs) == 0 {
		return added, nil
	}
	if t.s.dialect == Postgres {
		var ids, states, msgs, ats, recv []string
		var seqs []int64
		for _, e := range evs {
			ids, seqs, states, msgs = append(ids, e.JobID), append(seqs, e.Seq), append(states, e.State), append(msgs, e.Message)
			ats, recv = append(ats, formatTime(e.At)), append(recv, formatTime(e.ReceivedAt))
		}
		return added, scan(t.tx.Query(`INSERT INTO job_events (job_id, seq, state, message, at, received_at)
			SELECT * FROM unnest(?::text[], ?::bigint[], ?::text[], ?::text[], ?::text[], ?::text[])
			ON CONFLICT DO NOTHING RETURNING job_id, seq`, ids, seqs, states, msgs, ats, recv))
	}
	const row = "(?, ?, ?, ?, ?, ?)"
	for i := 0; i < len(evs); i += eventsPerInsert {
		part := evs[i:min(i+eventsPerInsert, len(evs))]
		args := make([]any, 0, 6*len(part))
		for _, e := range part {
			args = append(args, e.JobID, e.Seq, e.State, e.Message, formatTime(e.At), formatTime(e.ReceivedAt))
		}
		if err := scan(t.tx.Query(`INSERT INTO job_events (job_id, seq, state, message, at, received_at) VALUES `+row+strings.Repeat(", "+row, len(part)-1)+
			` ON CONFLICT DO NOTHING RETURNING job_id, seq`, args...)); err != nil {
			return nil, err
		}
	}
	return added, nil
}

// EventMessage is a stored event's seq and message.
type EventMessage struct {
	Seq     int64
	Message string
}

// LastEventMessages is LastEventMessage of many jobs: the newest event
// in state of each job that has one.
func (t *JobTx) LastEventMessages(ids []string, state string) (map[string]EventMessage, error) {
	out := map[string]EventMessage{}
	err := chunks(ids, func(part []string) error {
		in, args := inList(part)
		rows, err := t.tx.Query(`SELECT job_id, seq, message FROM job_events WHERE state = ? AND job_id IN (`+in+`)`, append([]any{state}, args...)...)
		if err != nil {
			return err
		}
		type ev struct {
			id string
			EventMessage
		}
		evs, err := collect(rows, func(r scanner) (ev, error) {
			var e ev
			return e, r.Scan(&e.id, &e.Seq, &e.Message)
		})
		for _, e := range evs {
			if o, ok := out[e.id]; !ok || e.Seq > o.Seq {
				out[e.id] = e.EventMessage
			}
		}
		return err
	})
	return out, err
}

// UpdateJobs writes what the rules changed of each job: its result,
// reason, start, end and last progress, as in rows (one statement on
// PostgreSQL).
func (t *JobTx) UpdateJobs(rows []JobRow) error {
	if len(rows) == 0 {
		return nil
	}
	null := func(at *time.Time) sql.NullString {
		if at == nil {
			return sql.NullString{}
		}
		return sql.NullString{String: formatTime(*at), Valid: true}
	}
	if t.s.dialect == Postgres {
		var ids, results, reasons, progress []string
		var started, ended []*string // NULL: nil
		ptr := func(at *time.Time) *string {
			if at == nil {
				return nil
			}
			s := formatTime(*at)
			return &s
		}
		for _, j := range rows {
			ids, results, reasons, progress = append(ids, j.ID), append(results, j.Result), append(reasons, j.Reason), append(progress, formatTime(j.LastProgressAt))
			started, ended = append(started, ptr(j.StartedAt)), append(ended, ptr(j.EndedAt))
		}
		_, err := t.tx.Exec(`UPDATE jobs SET result = v.result, reason = v.reason, started_at = v.started, ended_at = v.ended, last_progress_at = v.progress
			FROM unnest(?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[]) AS v(id, result, reason, started, ended, progress)
			WHERE jobs.id = v.id`, ids, results, reasons, started, ended, progress)
		return err
	}
	for _, j := range rows {
		if err := t.exec(`UPDATE jobs SET result = ?, reason = ?, started_at = ?, ended_at = ?, last_progress_at = ? WHERE id = ?`,
			j.Result, j.Reason, null(j.StartedAt), null(j.EndedAt), formatTime(j.LastProgressAt), j.ID); err != nil {
			return err
		}
	}
	return nil
}

// TrimEventsOf is TrimEvents of many jobs: their events counted in a few
// queries, and the cap applied to those over it.
func (t *JobTx) TrimEventsOf(ids []string) error {
	var over []string
	err := chunks(ids, func(part []string) error {
		in, args := inList(part)
		rows, err := t.tx.Query(`SELECT job_id FROM job_events WHERE job_id IN (`+in+`) GROUP BY job_id HAVING COUNT(*) > ?`, append(args, MaxJobEvents)...)
		if err != nil {
			return err
		}
		ids, err := collect(rows, func(r scanner) (string, error) {
			var id string
			return id, r.Scan(&id)
		})
		over = append(over, ids...)
		return err
	})
	if err != nil {
		return err
	}
	for _, id := range over {
		if err := trimEvents(t.tx, id); err != nil {
			return err
		}
	}
	return nil
}
