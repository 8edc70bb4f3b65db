package fleet

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/pkg/versions"
	"github.com/dropless/dropless/updateserver/internal/fault"
	"github.com/dropless/dropless/updateserver/internal/maint"
	"github.com/dropless/dropless/updateserver/internal/store"
)

// The rollout scheduler: one loop that passes over the running rollouts
// whenever a rollout's job ends (the JobEnded signal), support changes a
// rollout, or a tick passes (windows open, soak times pass). Each pass
// reads where every site is from the store, decides in Go, and writes in
// one job transaction: the sites it starts get their jobs (marked with
// the rollout) in the transaction that checks they have none, so a
// server restarted at any point goes on where it was and never starts a
// site twice.

// DefaultRolloutTick is how often the scheduler looks at the running
// rollouts without a signal.
const DefaultRolloutTick = 5 * time.Second

// kicker returns the channel that wakes the scheduler.
func (f *Fleet) kicker() chan struct{} {
	f.kickOnce.Do(func() { f.kick = make(chan struct{}, 1) })
	return f.kick
}

// kickRollouts wakes the scheduler (a no-op when it is already due).
func (f *Fleet) kickRollouts() {
	select {
	case f.kicker() <- struct{}{}:
	default:
	}
}

// RunRollouts runs the scheduler until ctx ends: a pass now, then after
// every job end of a rollout, every change support makes, and every tick.
func (f *Fleet) RunRollouts(ctx context.Context, tick time.Duration) {
	stop := f.Subscribe(func(e JobEvent) {
		if e.RolloutID != "" && e.Type == JobEnded {
			f.kickRollouts()
		}
	})
	defer stop()
	for {
		start := time.Now()
		next, err := f.ScheduleRollouts(ctx)
		if err != nil && ctx.Err() == nil {
			f.Log.Error("scheduling rollouts failed", "err", err)
		}
		// A pass reads every site of the running rollouts, and a large
		// wave ends thousands of jobs a minute, each a kick: kicked
		// passes come at most every rolloutGap, or twice as long as this
		// one took (so that the scheduler takes at most a third of the
		// time it would take running back to back), and at least every
		// tick.
		gap := min(max(rolloutGap, 2*time.Since(start)), tick)
		wait := tick
		if !next.IsZero() {
			wait = min(wait, max(next.Sub(f.now()), 10*time.Millisecond))
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-f.kicker():
			if d := time.Until(start.Add(gap)); d > 0 {
				t.Reset(d)
				select {
				case <-ctx.Done():
					t.Stop()
					return
				case <-t.C:
				}
			}
		case <-t.C:
		}
		t.Stop()
	}
}

// rolloutGap is the least time between the starts of two scheduler
// passes that a job end kicked.
const rolloutGap = 500 * time.Millisecond

// ScheduleRollouts makes one pass over the running rollouts: each pauses
// itself when its failures reach its limit, moves to its next wave when
// the current one ended (or completes), and starts sites of its current
// wave while it has room. It returns when a wave waiting for its soak
// time may start (zero when none waits).
//
// Its reads go ahead of the agents' (store.Priority): a wave waits for
// them, and at 100,000 agents connecting, the read pool's queue of
// check-ins held its read of the rollout's sites for 39 s. Its job
// transactions keep their order all the same.
func (f *Fleet) ScheduleRollouts(ctx context.Context) (time.Time, error) {
	ctx = store.Priority(ctx)
	running, err := f.Store.Rollouts(ctx, protocol.RolloutRunning)
	if err != nil {
		return time.Time{}, err
	}
	var next time.Time
	for _, ro := range running {
		// A step that changed something (a wave ended, sites finished
		// without a job) may let the next one do more.
		for range 1000 {
			again, at, err := f.stepRollout(ctx, ro.ID)
			if err != nil {
				return next, fmt.Errorf("%s: %w", rolloutName(ro.ID), err)
			}
			if !at.IsZero() && (next.IsZero() || at.Before(next)) {
				next = at
			}
			if !again {
				break
			}
		}
	}
	return next, nil
}

// stepRollout takes one decision for rollout id. again: it changed
// something and another step may do more; at: when its waiting wave may
// start.
func (f *Fleet) stepRollout(ctx context.Context, id int64) (again bool, at time.Time, err error) {
	ro, err := f.Store.Rollout(ctx, id)
	if err != nil || ro.State != protocol.RolloutRunning {
		return false, at, err
	}
	sites, err := f.Store.RolloutSites(ctx, id)
	if err != nil {
		return false, at, err
	}
	t, statuses := count(ro, sites)
	now := f.now()
	limit, err := ParseMaxFailures(ro.MaxFailures)
	if err != nil {
		return false, at, err
	}
	if t.failures > ro.FailuresSeen && limit.tripped(t.failures, t.started) {
		reason := andonReason(ro, t)
		return false, at, f.pauseItself(ctx, ro, reason, func(r *store.RolloutRow) { r.FailuresSeen = t.failures })
	}
	if !t.busy[ro.Wave] {
		if ro.Wave >= t.last {
			return false, at, f.updateItself(ctx, ro, "rollout.complete", fmt.Sprintf("succeeded=%d failed=%d", t.started-t.failures, t.failures),
				func(r *store.RolloutRow) { r.State, r.EndedAt = protocol.RolloutCompleted, &now })
		}
		ended := ro.Wave
		detail := fmt.Sprintf("wave=%d ended; next wave=%d from %s", ended, ended+1, now.Add(ro.Soak).UTC().Format(time.RFC3339))
		return true, at, f.updateItself(ctx, ro, "rollout.wave", detail, func(r *store.RolloutRow) {
			r.Wave, r.WaveAt = ended+1, now.Add(ro.Soak)
			if ro.Hold {
				r.State = protocol.RolloutPaused
				r.Reason = fmt.Sprintf("wave %d ended; held between waves for approval: rollout resume %d starts wave %d", ended, ro.ID, ended+1)
			}
		})
	}
	if now.Before(ro.WaveAt) {
		return false, ro.WaveAt, nil
	}
	slots := ro.MaxParallel - t.inflight
	if slots <= 0 {
		return false, at, nil
	}
	var waiting []string
	for i, rs := range sites {
		if rs.Wave == ro.Wave && statuses[i].Status == protocol.RolloutSiteWaiting {
			waiting = append(waiting, rs.Site)
		}
	}
	started, err := f.startSites(ctx, ro, waiting, slots)
	return started, at, err
}

// andonReason says why failures paused a rollout and which sites failed.
func andonReason(ro store.RolloutRow, t tally) string {
	var failed []string
	for i, s := range t.failed {
		if i == 10 {
			failed = append(failed, fmt.Sprintf("and %d more", len(t.failed)-10))
			break
		}
		failed = append(failed, s.Site+" ("+s.Reason+")")
	}
	return fmt.Sprintf("%d failures of %d sites started reach max failures %s: %s; no new site starts, running jobs finish: rollout resume %d goes on, rollout cancel %d stops",
		t.failures, t.started, ro.MaxFailures, strings.Join(failed, "; "), ro.ID, ro.ID)
}

// pauseItself pauses a running rollout the scheduler read as ro.
func (f *Fleet) pauseItself(ctx context.Context, ro store.RolloutRow, reason string, also func(*store.RolloutRow)) error {
	f.Log.Warn("rollout paused itself", "rollout", ro.ID, "reason", reason)
	return f.updateItself(ctx, ro, "rollout.pause", reason, func(r *store.RolloutRow) {
		r.State, r.Reason = protocol.RolloutPaused, reason
		also(r)
	})
}

// updateItself applies change to the rollout the scheduler read as ro,
// unless support changed it meanwhile (its state or wave), and audits it
// as done by the rollout itself.
func (f *Fleet) updateItself(ctx context.Context, ro store.RolloutRow, action, detail string, change func(*store.RolloutRow)) error {
	return f.jobs(ctx, f.now(), func(r *jobRun) error {
		cur, err := r.tx.Rollout(ro.ID)
		if err != nil || cur.State != ro.State || cur.Wave != ro.Wave {
			return err
		}
		before := cur
		change(&cur)
		if err := r.tx.UpdateRollout(cur); err != nil {
			return err
		}
		r.rolloutChanged(before, cur, rolloutName(ro.ID))
		return r.tx.Audit(r.now, store.Audit{Actor: rolloutName(ro.ID), Action: action, Object: rolloutName(ro.ID), Detail: detail})
	})
}

// plannedSite is a site the scheduler starts: its jobs, or, without
// jobs, its outcome (it runs the version already; it cannot be planned).
type plannedSite struct {
	site            string
	jobs            []store.NewJob
	outcome, reason string
}

// readBatch is how many waiting sites the scheduler reads (one query) and
// plans at once while it looks for sites whose window is open. (It and
// startBatch are variables for tests.)
var readBatch = 256

// startBatch is how many sites the scheduler starts in one job
// transaction at most. The store's writer holds the write lock of every
// replica while a transaction runs, and a wave of 8,000 sites started in
// one (with a few queries per site) held it for 17 s on a loaded
// machine: every agent's check-in report and job event, on every
// replica, waited behind it, past their timeouts. A batch is a few
// statements for all its sites, and goes before the agents' writes
// (jobsFirst): the agents it woke queue their job events by the
// thousand meanwhile.
var startBatch = 2000

// startSites starts up to slots of the waiting sites (in order) whose
// window is open and no freeze holds: reads them readBatch at a time (one
// query each), plans each (multi-hop paths per site), and creates the
// jobs of each startBatch of them in one transaction, whose long-polls
// are woken before the next batch. It reports whether it started sites and left
// slots free. A site on the version already succeeds at once, and so
// does one on a newer version (a rollout never downgrades); a site that
// cannot be planned (no path, drift) fails with the planner's reason;
// none of them takes a slot.
func (f *Fleet) startSites(ctx context.Context, ro store.RolloutRow, waiting []string, slots int) (bool, error) {
	plan := f.NewPlanner()
	opts := PlanOptions{CreatedBy: rolloutName(ro.ID)}
	windows := &maint.Service{Store: f.Store, Now: f.now}
	taken, started := 0, 0
	var chosen []plannedSite
	for i := 0; i < len(waiting) && taken < slots; i += readBatch {
		names := waiting[i:min(i+readBatch, len(waiting))]
		byName, err := f.Store.SitesByName(ctx, names)
		if err != nil {
			return false, err
		}
		var batch []protocol.Site
		for _, name := range names {
			st, ok := byName[name]
			if !ok {
				return false, fmt.Errorf("site %s: %w", name, store.ErrNotFound)
			}
			batch = append(batch, st)
		}
		if err := windows.Annotate(ctx, batch); err != nil {
			return false, err
		}
		for _, st := range batch {
			if taken == slots {
				break
			}
			if !st.WindowOpen {
				continue
			}
			if installed := st.InstalledVersion; ro.Product != AgentProduct && installed != "" && versions.Compare(installed, ro.Version) > 0 {
				// Ahead of the rollout (a hot fix, a later release): not a
				// failure of the release, and never downgraded by it.
				chosen = append(chosen, plannedSite{site: st.Site, outcome: protocol.RolloutSiteSucceeded, reason: "runs " + installed + ", newer than " + ro.Version})
				continue
			}
			hops, err := plan.PlanSite(ctx, st, ro.Product, ro.Version, opts)
			fe, refused := fault.As(err)
			switch {
			case err != nil && !refused:
				return false, err
			case refused:
				chosen = append(chosen, plannedSite{site: st.Site, outcome: protocol.RolloutSiteFailed, reason: fe.Msg})
			case len(hops) == 0:
				chosen = append(chosen, plannedSite{site: st.Site, outcome: protocol.RolloutSiteSucceeded, reason: "runs " + ro.Version + " already"})
			default:
				for k := range hops {
					hops[k].RolloutID = ro.ID
				}
				chosen = append(chosen, plannedSite{site: st.Site, jobs: hops})
				taken++
			}
		}
		if len(chosen) < startBatch && taken < slots && i+readBatch < len(waiting) {
			continue // plan more before a transaction
		}
		n, stop, err := f.startBatch(ctx, ro, chosen)
		if err != nil {
			return false, err
		}
		started, chosen = started+n, nil
		if stop {
			return false, nil
		}
	}
	// Another step right away may start more only when this one left
	// slots free (the wave may have ended); with every slot taken, the
	// next pass comes with the next job end.
	return started > 0 && taken < slots, nil
}

// startBatch starts the chosen sites of rollout ro in one job
// transaction: the jobs of those the rollout has not started yet, the
// outcome of those that need none; it wakes their long-polls once
// committed. n is how many it started; stop: support changed the
// rollout meanwhile (paused, cancelled, moved on): start no more.
func (f *Fleet) startBatch(ctx context.Context, ro store.RolloutRow, chosen []plannedSite) (n int, stop bool, err error) {
	if len(chosen) == 0 {
		return 0, false, nil
	}
	var names []string
	err = f.jobsFirst(ctx, f.now(), func(r *jobRun) error {
		names, stop = nil, false
		cur, err := r.tx.Rollout(ro.ID)
		if err != nil {
			return err
		}
		if cur.State != protocol.RolloutRunning || cur.Wave != ro.Wave {
			stop = true
			return nil
		}
		all := make([]string, len(chosen))
		for i, p := range chosen {
			all[i] = p.site
		}
		started, err := r.tx.RolloutSitesStarted(ro.ID, all)
		if err != nil {
			return err
		}
		var plannedJobs []plannedSite
		var jobSites []string
		for _, p := range chosen {
			if started[p.site] {
				continue
			}
			if p.outcome != "" {
				if err := r.tx.SetRolloutSiteOutcome(ro.ID, p.site, p.outcome, p.reason); err != nil {
					return err
				}
				names = append(names, p.site+"="+p.outcome)
				continue
			}
			plannedJobs = append(plannedJobs, p)
			jobSites = append(jobSites, p.site)
		}
		// The jobs of all the batch's sites are created together (a few
		// statements for all); a site whose agent has a job of the
		// product in hands waits for it to end, and starts in a later
		// pass.
		open, err := r.tx.OpenJobsOf(jobSites)
		if err != nil {
			return err
		}
		var jobs []store.NewJob
		for _, p := range plannedJobs {
			if busy := pickedUpJob(open[p.site], p.jobs); busy != nil {
				f.Log.Info("rollout site waits for its running job", "rollout", ro.ID, "site", p.site, "job", busy.ID)
				continue
			}
			jobs = append(jobs, p.jobs...)
			names = append(names, p.site)
		}
		if len(jobs) > 0 {
			if err := r.createJobs(jobs, f.handOutHeld(ctx, r.now)); err != nil {
				return err
			}
		}
		if len(names) == 0 {
			return nil
		}
		return r.tx.Audit(r.now, store.Audit{Actor: rolloutName(ro.ID), Action: "rollout.start", Object: rolloutName(ro.ID),
			Detail: fmt.Sprintf("wave=%d sites=%s", ro.Wave, strings.Join(names, ","))})
	})
	if err != nil {
		return 0, false, err
	}
	return len(names), stop, nil
}

// pickedUpJob returns the open job of one of the products of jobs that
// the site's agent has in hands (running, or handed out), which refuses
// a new upgrade of that product (supersede); nil when there is none.
func pickedUpJob(open []store.JobRow, jobs []store.NewJob) *store.JobRow {
	for i, o := range open {
		for _, j := range jobs {
			if o.Product == j.Product && (o.Result == protocol.ResultRunning || o.PickedUp) {
				return &open[i]
			}
		}
	}
	return nil
}
