package store

import (
	"context"
	"database/sql"
	"sync"
	"sync/atomic"
	"time"
)

// Check-in reports are written in batches: the reports waiting together
// are one write of the writer's group, one
// statement on PostgreSQL (a round trip to the database for a thousand
// sites, not three for each) and one notification to the other replicas.
// The first check-ins after agents (re)connect all write: 20,000 of them
// at once were the store's busiest moment.
//
// The reports queue beside the other writes, not among them: every group
// the writer commits takes the reports waiting at that moment along
// (writer, store.go). A report so waits for at most the group being
// committed and its own, however many writes queue before it: an upgrade
// of 10,000 sites queues 10,000 event transactions at once, and a report
// behind them (as one more write) waited for all of them, its check-in
// past its agent's timeout.

// A check-in without a job's progress does not wait for that: its
// report is queued and the answer leaves at once (Store.Checkin, wait
// false). While 100,000 agents came online, their first check-ins each
// waited 1-20 s for the write of their report (six replicas' writers
// taking turns on one database), and thousands timed out. What is owed
// to the user is kept, differently:
//
//   - a reader of the sites' reports (the API, the dashboard, rollouts,
//     metrics) first waits for the reports queued before it
//     (reportsWritten), so it sees what every answered check-in of this
//     process reported, as before; a transaction of the writer sees the
//     reports queued before its group formed (each group takes every
//     queued report, first);
//   - a check-in carrying a job's progress or result still waits for its
//     report to commit, as every write of a job does;
//   - a report lost (a crash before its group committed, a failed
//     write) is re-sent by the agent's next check-in: the site's report
//     is known only once committed (seenEntry), and a new process knows
//     none.
//
// Another replica reads a report once its group committed, as before
// (then a check-in's answer meant the write had committed; now it may
// leave first).

// reportReq is one site's report waiting to be written, or (site "") a
// reader waiting for the reports queued before it (reportsWritten).
type reportReq struct {
	ctx  context.Context
	site string
	rep  report
	now  time.Time
	// done, when not nil, is answered with the outcome.
	done chan error
	// e is the site's presence, told the outcome (settle), with seq and
	// forgot as they were when the report was queued.
	e           *seenEntry
	seq, forgot uint64
	// queued: its check-in did not wait (counted in reportQueue.queued).
	queued bool
}

// maxReports bounds the reports of one statement.
const maxReports = 1000

// reportQueue holds the reports waiting for the writer, which takes them
// all when it forms a group. Queuing never waits: the writer may be
// committing a group for seconds.
type reportQueue struct {
	mu     sync.Mutex
	q      []*reportReq
	closed bool
	wake   chan struct{} // holds a token while q may not be empty
	// queued counts the reports of check-ins that did not wait, not yet
	// answered: while there are none, a reader has nothing to wait for.
	queued atomic.Int64
}

func (rq *reportQueue) init() { rq.wake = make(chan struct{}, 1) }

// put queues q, or refuses it once the store is closed.
func (rq *reportQueue) put(q *reportReq) error {
	rq.mu.Lock()
	if rq.closed {
		rq.mu.Unlock()
		return ErrClosed
	}
	if q.queued {
		rq.queued.Add(1)
	}
	rq.q = append(rq.q, q)
	rq.mu.Unlock()
	select {
	case rq.wake <- struct{}{}:
	default:
	}
	return nil
}

// take returns the queued reports, oldest first, and empties the queue.
func (rq *reportQueue) take() []*reportReq {
	rq.mu.Lock()
	defer rq.mu.Unlock()
	q := rq.q
	rq.q = nil
	return q
}

// close refuses every later report and returns those queued.
func (rq *reportQueue) close() []*reportReq {
	rq.mu.Lock()
	rq.closed = true
	rq.mu.Unlock()
	return rq.take()
}

// writeReport queues site's report (and last_seen = now) and, with wait,
// returns once it is committed. The site's presence e is told the
// outcome either way.
func (s *Store) writeReport(ctx context.Context, e *seenEntry, site string, r report, now time.Time, seq, forgot uint64, wait bool) error {
	q := &reportReq{ctx: ctx, site: site, rep: r, now: now, e: e, seq: seq, forgot: forgot, queued: !wait}
	if wait {
		q.done = make(chan error, 1)
	} else {
		q.ctx = context.Background() // written whatever becomes of the check-in
	}
	if err := s.reports.put(q); err != nil {
		e.settle(q, err)
		return err
	}
	if !wait {
		return nil
	}
	// Once queued, wait for the outcome even if ctx ends: the writer
	// answers at once a report whose caller has gone (reportsWrite).
	return <-q.done
}

// reportsWritten returns once every report queued before the call is
// committed (or failed: its site's next check-in sends it again), so
// that a reader of the sites' reports sees what every check-in answered
// by this process reported. A reader in a write transaction must not
// call it: the writer would wait for itself.
func (s *Store) reportsWritten(ctx context.Context) error {
	if s.reports.queued.Load() == 0 {
		return nil
	}
	q := &reportReq{ctx: context.Background(), done: make(chan error, 1)}
	if err := s.reports.put(q); err != nil {
		return err
	}
	select {
	case <-q.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// reportsWrite is the write of a group that writes reports: those whose
// caller still waits or did not wait, each site's newest once, in one
// statement per maxReports (updateReports). It answers each report once
// the group committed (answer).
func (s *Store) reportsWrite(reports []*reportReq) (w *writeReq, answer func(error)) {
	latest := make(map[string]int, len(reports))
	var live []*reportReq
	answered := make([]bool, len(reports))
	for i, q := range reports {
		if q.site == "" {
			continue // a reader's mark
		}
		if err := q.ctx.Err(); err != nil {
			s.answerReport(q, err)
			answered[i] = true
			continue
		}
		if j, ok := latest[q.site]; ok {
			live[j] = q // queued later: newer
			continue
		}
		latest[q.site] = len(live)
		live = append(live, q)
	}
	w = &writeReq{ctx: context.Background(), fn: func(tx *sql.Tx) error {
		for part := live; len(part) > 0; {
			n := min(maxReports, len(part))
			if err := s.updateReports(tx, part[:n]); err != nil {
				return err
			}
			part = part[n:]
		}
		return nil
	}, done: make(chan error, 1)}
	return w, func(err error) {
		for i, q := range reports {
			if !answered[i] {
				s.answerReport(q, err)
			}
		}
	}
}

// answerReport tells q's site's presence and its caller the outcome of
// its write.
func (s *Store) answerReport(q *reportReq, err error) {
	if q.e != nil {
		q.e.settle(q, err)
	}
	if q.queued {
		s.reports.queued.Add(-1)
	}
	if q.done != nil {
		q.done <- err
	}
}

// updateReports writes batch's reports in tx, and tells the other
// replicas' caches: the agent may check in through another replica next,
// then back here, and each must write.
func (s *Store) updateReports(tx *sql.Tx, batch []*reportReq) error {
	if len(batch) == 0 {
		return nil
	}
	items := make([]string, len(batch))
	for i, q := range batch {
		items[i] = cacheSite + "\t" + q.site
	}
	if s.dialect == Postgres {
		var cols [9][]string
		for _, q := range batch {
			r := q.rep
			for i, v := range []string{q.site, r.installed, r.state, r.agent, r.os, r.arch, r.host, formatTime(q.now), r.drift} {
				cols[i] = append(cols[i], v)
			}
		}
		args := make([]any, len(cols))
		for i := range cols {
			args[i] = cols[i]
		}
		if _, err := tx.Exec(`UPDATE sites SET installed_version = v.installed, state = v.state, agent_version = v.agent, os = v.os, arch = v.arch,
			hostname = v.host, last_seen = v.seen, drift = v.drift
			FROM unnest(?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[])
				AS v(site, installed, state, agent, os, arch, host, seen, drift)
			WHERE sites.site = v.site`, args...); err != nil {
			return err
		}
		return s.tellCaches(tx, items...)
	}
	st, kept, err := s.txStmt(tx, `UPDATE sites SET installed_version = ?, state = ?, agent_version = ?, os = ?, arch = ?, hostname = ?, last_seen = ?, drift = ?
		WHERE site = ?`)
	if err != nil {
		return err
	}
	if !kept {
		defer st.Close()
	}
	for _, q := range batch {
		r := q.rep
		if _, err := st.Exec(r.installed, r.state, r.agent, r.os, r.arch, r.host, formatTime(q.now), r.drift, q.site); err != nil {
			return err
		}
	}
	return s.tellCaches(tx, items...)
}
