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

// reporter writes queued reports in batches until Close: while one batch
// waits for the writer, the next gathers.
func (s *Store) reporter() {
	defer close(s.reportsDone)
	for {
		batch, ok := gather(s.reports, s.quit, maxReports)
		if !ok {
			return
		}
		live := batch[:0:0]
		for _, q := range batch {
			if err := q.ctx.Err(); err != nil {
				q.done <- err
				continue
			}
			live = append(live, q)
		}
		// Ahead of the queued job reports (see Priority): the check-ins
		// wait for it before they read their assignment.
		err := s.tx(Priority(context.Background()), func(tx *sql.Tx) error { return s.updateReports(tx, live) })
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
