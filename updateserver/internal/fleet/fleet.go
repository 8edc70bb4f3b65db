// Package fleet is support's side of the server and the agents' partner,
// and the owner of the rules of jobs. By file:
//
//   - enrollment.go: enroll tokens, and agents exchanging them for their
//     site's credential.
//   - upgrade.go: planning (Planner.PlanSite: which jobs, one per hop,
//     take a site's product or its agent to a version; path.go finds the
//     hops) and Upgrade, support's upgrade of a site or a client.
//   - jobs.go: what happens to a job, from CreateJobs to its end:
//     supersede, hand-out, start, hop chains, timeouts, the reason. Start
//     here to learn what happens when a job ends.
//   - events.go: the signals (JobCreated, JobStarted, JobEnded) other
//     parts subscribe to, and the log line of each.
//   - checkin.go: agents' check-ins (long-polled, so that an upgrade
//     reaches a connected agent at once) and their batches of events.
//   - hub.go: wakes long-polling check-ins when their site gets a job.
//   - sweeper.go: runs the timeout rule periodically.
//   - follow.go: sites that follow a channel (with a pin): follow
//     passes, woken by release changes and by jobs ending.
//   - sites.go: what support reads: a site, its history, and what a
//     list of sites shows of their jobs (Annotate, Downtime).
//   - rollout.go, rollout_plan.go, rollout_sched.go: rollouts (support's
//     side; the wave and failure arithmetic; the scheduler that starts
//     their sites, woken by JobEnded).
//
// The store (package store) keeps the rows and transactions; every
// decision about a job is made here, in Go, inside one store
// transaction.
package fleet

import (
	"log/slog"
	"sync"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/bus"
	"github.com/dropless/dropless/updateserver/internal/fault"
	"github.com/dropless/dropless/updateserver/internal/store"
)

// Fleet manages sites and their jobs.
type Fleet struct {
	Store *store.Store
	Log   *slog.Logger
	Now   func() time.Time
	// PollInterval is what agents are told to wait between check-ins.
	PollInterval time.Duration
	// JobTimeout fails a job without progress for this long.
	JobTimeout time.Duration
	// Outbox, when set, is called inside each job transaction with the
	// signals its changes will emit once it commits: webhooks write their
	// outbox rows there (notify.JobOutbox), durable with the change. An
	// error rolls the transaction back.
	Outbox func(tx *store.JobTx, now time.Time, sigs []JobEvent) error
	// RolloutOutbox, likewise, is called inside a transaction that
	// changed rollouts (notify.RolloutOutbox), and RolloutsChanged once
	// it committed (the webhook sender wakes).
	RolloutOutbox   func(tx *store.JobTx, now time.Time, evs []RolloutEvent) error
	RolloutsChanged func()
	// Bus tells the other replicas of the store about job changes, in
	// the transaction that makes them (replicas.go); nil: none (one
	// server alone on its store).
	Bus bus.Bus

	hub     hub
	pickUps pickUps
	signals signals
	follow  follower

	kickOnce sync.Once
	kick     chan struct{} // wakes the rollout scheduler

	reportsOnce sync.Once
	reports     *store.JobBatch // the agents' event reports (jobreports.go)
}

func (f *Fleet) now() time.Time {
	if f.Now != nil {
		return f.Now()
	}
	return time.Now()
}

// validName checks a name against protocol.NamePattern.
func validName(kind, v string) error {
	if err := protocol.ValidName(kind, v); err != nil {
		return fault.Wrap(fault.Invalid, err)
	}
	return nil
}
