package store

import (
	"context"
	"database/sql"
	"time"
)

// Check-in reports are written in batches: a check-in whose report
// changed waits until its report is committed, as any write does, but the
// reports waiting together are one write of the writer's group, one
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

// reportReq is one site's report waiting to be written.
type reportReq struct {
	ctx  context.Context
	site string
	rep  report
	now  time.Time
	done chan error
}

// maxReports bounds a batch of reports.
const maxReports = 1000

// writeReport writes site's report (and last_seen = now) and returns once
// it is committed.
func (s *Store) writeReport(ctx context.Context, site string, r report, now time.Time) error {
	q := &reportReq{ctx: ctx, site: site, rep: r, now: now, done: make(chan error, 1)}
	select {
	case s.reports <- q:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.quit:
		return ErrClosed
	}
	return <-q.done
}

// reportsWrite is the write of a group that writes reports: those whose
// caller still waits, in one statement (updateReports). It answers each
// report once the group committed (answer).
func (s *Store) reportsWrite(reports []*reportReq) (w *writeReq, answer func(error)) {
	live := reports[:0:0]
	for _, q := range reports {
		if err := q.ctx.Err(); err != nil {
			q.done <- err
			continue
		}
		live = append(live, q)
	}
	w = &writeReq{ctx: context.Background(), fn: func(tx *sql.Tx) error { return s.updateReports(tx, live) }, done: make(chan error, 1)}
	return w, func(err error) {
		for _, q := range live {
			q.done <- err
		}
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
