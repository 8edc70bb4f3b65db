package store

import (
	"context"
	"database/sql"
)

// Operators ahead of the fleet. When support triggers an upgrade of
// 10,000 sites, those sites' agents keep the store busy: their first
// check-ins after connecting, their job events and results, their
// reports. Each of those is a read waiting for one of the read pool's few
// connections (database/sql hands a freed connection to a random waiter)
// and a write waiting in the writer's queue. Measured: the upgrade's own
// reads (its token, the client's sites) and writes (its token's last
// use, the transaction that creates the jobs and hands them out) waited
// 5-20 s behind the previous round's agents reporting their jobs, while
// doing them took under a second.
//
// So a context marked Priority (every operator request: the API's and
// the dashboard's) goes ahead: its reads use a pool of connections of
// their own, its writes the writer's first lane (the one WithJobsFirst
// uses: the writer takes it before the queued others, so a write there
// waits for at most the group being committed). Operators are a handful of people and scripts; the
// fleet is thousands of agents, so the fleet does not starve.
//
// Except job transactions (WithJobs): they keep the order they came in,
// an operator's too. A job's life is a sequence of agents' reports and
// operators' decisions whose order the user sees: an upgrade that came
// after an agent reported its last job done must find that job ended,
// not refuse the site because the report was overtaken ("site is running
// job ...").
//
// A batch of check-ins' reports goes ahead too (the writer takes the
// waiting reports first into every group, store_reports.go): the
// check-ins wait for it before they read their assignment, and after an
// upgrade committed, an agent still on its way back with its last job's
// result would otherwise wait for the 10,000 job reports of the agents
// answered first before it even learns its new job.
//
// A hand-out (WithJobsFirst) goes ahead of job transactions too: check-ins' answers
// wait for it, while the reports queued before it are other sites' (an
// agent reports, then checks in, one after the other). Measured: after an
// upgrade, the agents that were not held in a long-poll when it committed
// (on their way back with the last job's result) waited 20 s for their
// hand-out behind the 10,000 job reports of the agents answered first.

type priorityKey struct{}

// Priority marks ctx: the store's reads and writes made with it go ahead
// of the others, but for job transactions.
func Priority(ctx context.Context) context.Context {
	return context.WithValue(ctx, priorityKey{}, true)
}

func isPriority(ctx context.Context) bool {
	p, _ := ctx.Value(priorityKey{}).(bool)
	return p
}

// priorityConns is the size of the priority read pool.
const priorityConns = 2

// readPool is the read pool for ctx and its kept statements.
func (s *Store) readPool(ctx context.Context) (*sql.DB, *stmtCache) {
	if s.pdb != nil && isPriority(ctx) {
		return s.pdb, &s.preads
	}
	return s.db, &s.reads
}
