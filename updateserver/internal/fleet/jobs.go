package fleet

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/fault"
	"github.com/dropless/dropless/updateserver/internal/maint"
	"github.com/dropless/dropless/updateserver/internal/store"
)

// The rules of a job's life, all in this file:
//
//   - A job is created pending (CreateJobs). Creating jobs for a site's
//     product supersedes that product's pending jobs no agent has picked
//     up; a job the agent has picked up is never superseded: the new
//     upgrade is refused (a Conflict) until it ends.
//   - The agent is handed one job at a time: its site's oldest open job
//     (pickUp). Handing it out, or the agent reporting it works on it,
//     picks it up.
//   - The agent's first event of a pending job makes it running
//     (JobStarted); every new event restarts its clock (recordEvents).
//   - A job ends (finish, and every end goes through end, which emits
//     JobEnded) when its agent reports the end (an event in state
//     committed, rolled_back or failed, or a result in a check-in), when
//     it has no progress for the job timeout (sweep: "timed out"), when a
//     newer upgrade supersedes it, or when the hop before it does not
//     succeed. An ended job stays as it ended, except that its agent's
//     own report replaces a "timed out" the server concluded without it.
//   - The hops of a multi-step upgrade are one pending job each, in
//     order: when a hop succeeds the next one's clock starts; when it does
//     not, the later hops are cancelled.
//
// The store only keeps the rows: every rule runs in Go inside one store
// transaction (store.JobTx), and the signals of its changes are emitted
// after it committed.

// reasonTimedOut is the reason of a job the sweeper ended.
const reasonTimedOut = "timed out"

// jobRun is one transaction of job rules: the store transaction, its
// time, and the signals its changes emit once it committed.
type jobRun struct {
	tx *store.JobTx
	// w writes the rules' changes of jobs: tx itself, or a batch of
	// reports' changes kept in memory and written together (jobBatch).
	w   jobWrites
	now time.Time
	out []JobEvent
	// rollouts are the rollout changes made, for RolloutOutbox.
	rollouts []RolloutEvent
	// wake are the long-polls to wake once committed (createJobs).
	wake []wakeUp
}

// jobs runs fn in one store transaction at now and emits the signals of
// its changes once the transaction committed (none when it failed).
func (f *Fleet) jobs(ctx context.Context, now time.Time, fn func(*jobRun) error) error {
	return f.jobsVia(ctx, f.Store.WithJobs, now, fn)
}

// jobsFirst is jobs for a transaction the store's writer takes before
// the agents' writes (store.Store.WithJobsFirst).
func (f *Fleet) jobsFirst(ctx context.Context, now time.Time, fn func(*jobRun) error) error {
	return f.jobsVia(ctx, f.Store.WithJobsFirst, now, fn)
}

func (f *Fleet) jobsVia(ctx context.Context, with func(context.Context, func(*store.JobTx) error) error, now time.Time, fn func(*jobRun) error) error {
	var r *jobRun
	err := with(ctx, func(tx *store.JobTx) error {
		var err error
		r, err = f.jobTx(tx, now, fn)
		return err
	})
	if err == nil && r != nil {
		f.committed(r)
	}
	return err
}

// jobTx runs fn in tx at now, then writes what its changes tell (the
// webhook outbox, the other replicas), and returns the run.
func (f *Fleet) jobTx(tx *store.JobTx, now time.Time, fn func(*jobRun) error) (*jobRun, error) {
	r := &jobRun{tx: tx, w: tx, now: now}
	if err := fn(r); err != nil {
		return r, err
	}
	return r, f.tell(r)
}

// tell writes, in r's transaction, what its changes tell: the webhook
// outbox rows of its signals and rollout changes, and the other
// replicas' notifications.
func (f *Fleet) tell(r *jobRun) error {
	if f.Outbox != nil && len(r.out) > 0 {
		if err := f.Outbox(r.tx, r.now, r.out); err != nil {
			return err
		}
	}
	if f.RolloutOutbox != nil && len(r.rollouts) > 0 {
		if err := f.RolloutOutbox(r.tx, r.now, r.rollouts); err != nil {
			return err
		}
	}
	if f.Bus != nil {
		return f.Bus.InTx(r.tx.Exec, f.busMsgs(r)...)
	}
	return nil
}

// committed emits the signals of run r once its transaction committed.
func (f *Fleet) committed(r *jobRun) {
	// The held long-polls first: their answers are what an upgrade
	// waits for, and emit logs a line per job (10,000 for a
	// client-wide upgrade).
	f.wake(r.wake)
	f.emit(r.out)
	if len(r.rollouts) > 0 && f.RolloutsChanged != nil {
		f.RolloutsChanged()
	}
}

func (r *jobRun) signal(t JobEventType, j store.JobRow, amends bool) {
	e := JobEvent{Type: t, At: r.now, JobID: j.ID, Site: j.Site, Client: j.Client, Product: j.Product,
		From: j.From, To: j.To, Result: j.Result, Reason: j.Reason, CreatedBy: j.CreatedBy, Amends: amends}
	if j.RolloutID != 0 {
		e.RolloutID = strconv.FormatInt(j.RolloutID, 10)
	}
	r.out = append(r.out, e)
}

// end is the one place a job ends: it records result and reason
// (none for a success) and emits JobEnded. The callers decide whether
// the job may end; end only records it.
func (r *jobRun) end(j store.JobRow, result, reason string, amends bool) error {
	if result == protocol.ResultSucceeded {
		reason = ""
	}
	if err := r.w.EndJob(j.ID, result, reason, r.now); err != nil {
		return err
	}
	j.Result, j.Reason = result, reason
	r.signal(JobEnded, j, amends)
	return nil
}

// finish ends job j with result, as its agent reported it (byAgent) or as
// the server concluded, and applies what follows from the end: the
// site's later hops of the same product are cancelled when j did not
// succeed, and the site's jobs waiting behind j start their clock.
//
// An ended job stays as it ended, except that its agent's report
// replaces a "timed out": that end amends the first, and what followed
// the first (the later hops cancelled) stands.
func (r *jobRun) finish(j store.JobRow, result, reason string, byAgent bool) error {
	amends := byAgent && j.Result == protocol.ResultFailed && j.Reason == reasonTimedOut
	if !j.Open() && !amends {
		return nil
	}
	var open []store.JobRow
	if !amends {
		var err error
		if open, err = r.w.OpenJobs(j.Site); err != nil {
			return err
		}
	}
	if err := r.end(j, result, reason, amends); err != nil {
		return err
	}
	after := false
	for _, o := range open {
		if o.ID == j.ID {
			after = true
			continue
		}
		if !after || o.Result != protocol.ResultPending {
			continue
		}
		if o.Product == j.Product && result != protocol.ResultSucceeded {
			if err := r.end(o, protocol.ResultFailed, fmt.Sprintf("cancelled: the step before it (%s) ended %s", j.ID, result), false); err != nil {
				return err
			}
			continue
		}
		if err := r.w.Progress(o.ID, r.now); err != nil {
			return err
		}
	}
	return nil
}

// supersede makes way for a new upgrade (its first job by) of a site's
// product, whose open jobs are open: the product's pending jobs no agent
// has picked up end, superseded; a job the agent has picked up refuses
// the upgrade. It returns how many jobs of the site's other products stay
// open, and the site's jobs left open.
func (r *jobRun) supersede(open []store.JobRow, site, product, by string) (others int, left []store.JobRow, err error) {
	var gone []store.JobRow
	for _, o := range open {
		if o.Product != product {
			others++
			left = append(left, o)
			continue
		}
		if o.Result == protocol.ResultRunning || o.PickedUp {
			from := o.From
			if from == "" {
				from = "(nothing)"
			}
			return 0, nil, fault.New(fault.Conflict, "site %s is running job %s (%s -> %s): wait for it to end", site, o.ID, from, o.To)
		}
		gone = append(gone, o)
	}
	for _, o := range gone {
		if err := r.end(o, protocol.ResultFailed, "cancelled: superseded by job "+by, false); err != nil {
			return 0, nil, err
		}
	}
	return others, left, nil
}

// CreateJobs creates jobs in one transaction, in order: the jobs of one
// site and product are the hops of one upgrade, run one after the other.
// Before a site's product gets its new jobs, its pending jobs no agent
// has picked up are superseded; a job an agent has picked up refuses the
// whole set (fault.Conflict), nothing is created. The site's target
// version becomes its last job's (jobs of the site's own product only).
//
// The audit entry a is written in the same transaction. It returns the
// jobs as created. Once committed,
// each job emits JobCreated (superseded ones JobEnded), and a site whose
// new job is its next assignment has its long-poll woken with it.
func (f *Fleet) CreateJobs(ctx context.Context, jobs []store.NewJob, a store.Audit) ([]protocol.Job, error) {
	now := f.now()
	err := f.jobs(ctx, now, func(r *jobRun) error {
		if err := r.createJobs(jobs, f.handOutHeld(ctx, r.now)); err != nil {
			return err
		}
		return r.tx.Audit(r.now, a)
	})
	if err != nil {
		return nil, err
	}
	out := make([]protocol.Job, len(jobs))
	for i, j := range jobs {
		out[i] = protocol.Job{ID: j.ID, Site: j.Site, Product: j.Product, From: j.From, To: j.To, Result: protocol.ResultPending,
			CreatedAt: now, CreatedBy: j.CreatedBy, Events: []protocol.Event{}}
	}
	return out, nil
}

// wake wakes the long-polls of sites with a new next assignment, once
// the transaction that made it committed.
func (f *Fleet) wake(ws []wakeUp) {
	f.hub.notifyMany(ws)
}

// handOutHeld returns what decides, in the transaction at now that
// creates the jobs of wake (createJobs), which are handed out as they
// are created: each whose site's long-poll waits in this process and may
// take it now (made with --now, or its window open). The job is inserted
// handed out and the woken call answers at once, with no write of its
// own (wakeUp.handedOut). When 10,000 long-polls wake together, their
// answers leave without waiting for the writer, which the agents' own
// reports keep busy meanwhile. Should the call end before it answers
// (its agent gone, its wait run out, the server stopped), the job is the
// site's assignment, handed out, at the agent's next check-in, through
// any replica: recorded once, handed out until the agent reports it.
// The long-polls of wake are woken when the transaction commits
// (Fleet.jobs).
func (f *Fleet) handOutHeld(ctx context.Context, now time.Time) func(wake []wakeUp) error {
	return func(wake []wakeUp) error {
		var ask []int // wake's entries whose window decides
		var sites []protocol.Site
		for i := range wake {
			w := &wake[i]
			if !f.hub.holds(w.site) {
				continue
			}
			if w.now {
				w.handedOut, w.ws = true, protocol.WindowStatus{Open: true}
				continue
			}
			ask = append(ask, i)
			sites = append(sites, protocol.Site{Site: w.site, Client: w.client})
		}
		if len(sites) == 0 {
			return nil
		}
		ws, err := maint.CheckinMany(ctx, f.Store, now, sites)
		if err != nil {
			return err
		}
		for k, i := range ask {
			if ws[k].Open {
				wake[i].handedOut, wake[i].ws = true, ws[k]
			}
		}
		return nil
	}
}

// createJobs is CreateJobs inside a transaction: it supersedes, inserts
// and signals, and keeps the long-polls to wake once committed (r.wake);
// handOut (handOutHeld) marks those whose jobs are inserted handed out. A site
// whose picked-up job refuses the upgrade (fault.Conflict) is refused
// before anything of it is written. The sites and their open jobs are
// read once for all jobs (a client-wide upgrade of 10,000 sites reads
// them in a few queries, not two per site); the rules then run on those
// rows, kept up to date in memory as jobs end and are inserted.
func (r *jobRun) createJobs(jobs []store.NewJob, handOut func([]wakeUp) error) error {
	var names []string
	seen := map[string]bool{}
	for _, j := range jobs {
		if !seen[j.Site] {
			seen[j.Site] = true
			names = append(names, j.Site)
		}
	}
	sites, err := r.tx.OwnersOf(names)
	if err != nil {
		return err
	}
	open, err := r.tx.OpenJobsOf(names)
	if err != nil {
		return err
	}
	var wake []wakeUp
	var wakeJob []int // the index in insert of each wake-up's job
	type siteProduct struct{ site, product string }
	cleared := map[siteProduct]bool{}
	// The rows are written together at the end: the inserts in a few
	// multi-row statements, each site's target version (its last job's)
	// in one statement per version.
	var insert []store.NewJob
	target := map[string]string{}
	var targetOrder []string
	for _, j := range jobs {
		st, ok := sites[j.Site]
		if !ok {
			return fault.New(fault.NotFound, "site %s is not enrolled: see sites list", j.Site)
		}
		if sp := (siteProduct{j.Site, j.Product}); !cleared[sp] {
			cleared[sp] = true
			others, left, err := r.supersede(open[j.Site], j.Site, j.Product, j.ID)
			if err != nil {
				return err
			}
			open[j.Site] = left
			// The new job is the site's next assignment when no
			// other job of the site is open.
			if others == 0 {
				wakeJob = append(wakeJob, len(insert))
				wake = append(wake, wakeUp{site: j.Site, client: st.Client, now: j.Now, a: &protocol.Assignment{JobID: j.ID, Product: j.Product, Version: j.To, Target: j.Target, From: j.From,
					AcceptDrift: j.AcceptDrift, AllowDowngrade: j.AllowDowngrade, AllowIrreversible: j.AllowIrreversible}})
			}
		}
		insert = append(insert, j)
		row := store.JobRow{ID: j.ID, Site: j.Site, Client: st.Client, Product: j.Product, From: j.From, To: j.To,
			Result: protocol.ResultPending, CreatedBy: j.CreatedBy, RolloutID: j.RolloutID}
		open[j.Site] = append(open[j.Site], row)
		if j.Product == st.Product {
			if _, ok := target[j.Site]; !ok {
				targetOrder = append(targetOrder, j.Site)
			}
			target[j.Site] = j.To
		}
		r.signal(JobCreated, row, false)
	}
	if err := handOut(wake); err != nil {
		return err
	}
	for k, w := range wake {
		insert[wakeJob[k]].HandedOut = w.handedOut
	}
	if err := r.tx.InsertJobs(insert, r.now); err != nil {
		return err
	}
	byVersion := map[string][]string{}
	var versions []string
	for _, site := range targetOrder {
		v := target[site]
		if byVersion[v] == nil {
			versions = append(versions, v)
		}
		byVersion[v] = append(byVersion[v], site)
	}
	for _, v := range versions {
		if err := r.tx.SetTargetVersions(v, byVersion[v]); err != nil {
			return err
		}
	}
	r.wake = wake
	return nil
}

// reportEnd ends a site's job with result, as its agent reported it in a
// check-in. A job of another site is ignored.
//
// An agent sends its last job's result in every check-in until its next
// job: a read first finds most of them ended already, with nothing to
// change (an ended job stays as it ended but for a "timed out", see
// finish), and they cost no write transaction.
func (f *Fleet) reportEnd(ctx context.Context, now time.Time, site, id, result string) error {
	if j, err := f.Store.JobEnd(ctx, id); errors.Is(err, store.ErrNotFound) || (err == nil && j.Site != site) {
		return nil // not this site's job: ignore
	} else if err == nil && !j.Open() && !(j.Result == protocol.ResultFailed && j.Reason == reasonTimedOut) {
		return nil
	}
	return f.jobs(ctx, now, func(r *jobRun) error {
		j, err := r.tx.Job(id)
		if errors.Is(err, store.ErrNotFound) || (err == nil && j.Site != site) {
			return nil // not this site's job: ignore
		}
		if err != nil {
			return err
		}
		return r.finish(j, result, "", true)
	})
}

// recordEvents stores a site's job events, each (job, seq) once, and moves
// each job along: running on its first event, its clock restarted by every
// new one, ended on a terminal one (the agent's own report of the job it
// ran wins over what the server guessed: a job that timed out and then
// reports its end ends so). An event of a job of another site refuses the
// batch. It returns how many events were new.
//
// The store's writer may apply it together with the other sites' reports
// queued beside it (eventReports, jobreports.go): the same rules, in a
// few statements for all.
func (f *Fleet) recordEvents(ctx context.Context, now time.Time, site string, events []protocol.Event) (int, error) {
	rep := &eventReport{site: site, events: events, now: now}
	err := f.Store.WithJobsBatched(ctx, f.eventReports(), site, rep, func(tx *store.JobTx) error {
		var err error
		rep.run, err = f.jobTx(tx, now, func(r *jobRun) error {
			var err error
			rep.added, err = r.recordEvents(site, events)
			return err
		})
		return err
	})
	if err != nil {
		return 0, err
	}
	f.committed(rep.run)
	return rep.added, nil
}

// seenJob is a job of a report of events, as the report left it.
type seenJob struct {
	row   store.JobRow
	moved bool // its progress was recorded in this report
}

// recordEvents is Fleet.recordEvents inside the transaction r.
func (r *jobRun) recordEvents(site string, events []protocol.Event) (int, error) {
	added := 0
	seen := map[string]*seenJob{}
	var order []string
	for _, e := range events {
		sj, ok := seen[e.JobID]
		if !ok {
			j, err := r.tx.Job(e.JobID)
			if errors.Is(err, store.ErrNotFound) || (err == nil && j.Site != site) {
				return added, notSitesJob(e.JobID, site)
			}
			if err != nil {
				return added, err
			}
			sj = &seenJob{row: j}
			seen[e.JobID] = sj
			order = append(order, e.JobID)
		}
		if e.Seq <= sj.row.EventsDroppedThrough {
			continue // delivered before, and dropped by the cap since
		}
		added1, err := r.tx.AddEvent(e, r.now)
		if err != nil {
			return added, err
		}
		if !added1 {
			continue // delivered before
		}
		added++
		if err := r.eventAdded(sj, e); err != nil {
			return added, err
		}
	}
	for _, id := range order {
		if seen[id].moved {
			if err := r.tx.TrimEvents(id); err != nil {
				return added, err
			}
		}
	}
	return added, nil
}

// notSitesJob is the error of an event of a job that is not the site's.
func notSitesJob(id, site string) error {
	return fault.New(fault.Forbidden, "job %s is not a job of site %s", id, site)
}

// eventAdded moves job sj along for its new event e: the report's first
// new event of the job is progress, a terminal one ends it.
func (r *jobRun) eventAdded(sj *seenJob, e protocol.Event) error {
	if !sj.moved {
		sj.moved = true
		if err := r.progress(&sj.row, e.At); err != nil {
			return err
		}
	}
	if result := finalResult(e.State); result != "" {
		return r.agentEnded(e, result, &sj.row)
	}
	return nil
}

// progress records that the agent reported on open job j: a pending job
// starts running (JobStarted) at startedAt, the agent's time of its first
// event; the job's clock restarts.
func (r *jobRun) progress(j *store.JobRow, startedAt time.Time) error {
	if !j.Open() {
		return nil
	}
	if j.Result == protocol.ResultPending {
		if err := r.w.StartJob(j.ID, startedAt, r.now); err != nil {
			return err
		}
		j.Result = protocol.ResultRunning
		r.signal(JobStarted, *j, false)
		return nil
	}
	return r.w.Progress(j.ID, r.now)
}

// agentEnded ends job j, of terminal event e, with result (j as this
// transaction left it, kept up to date). The reason is the event's
// message; a rollback's also says why it rolled back (the message of the
// job's last rolling_back event).
func (r *jobRun) agentEnded(e protocol.Event, result string, j *store.JobRow) error {
	reason := e.Message
	if result == protocol.ResultRolledBack {
		why, err := r.w.LastEventMessage(e.JobID, protocol.StateRollingBack)
		if err != nil {
			return err
		}
		if why != "" {
			reason = why + " (" + e.Message + ")"
		}
	}
	before := *j
	if err := r.finish(before, result, reason, true); err != nil {
		return err
	}
	if before.Open() || (before.Result == protocol.ResultFailed && before.Reason == reasonTimedOut) {
		j.Result, j.Reason = result, reason // as finish ended it
		if result == protocol.ResultSucceeded {
			j.Reason = ""
		}
		return nil
	}
	// The agent's check-in may have ended the job before its events
	// arrived: the reason comes with them.
	if result == protocol.ResultSucceeded || before.Result != result || before.Reason != "" {
		return nil
	}
	j.Reason = reason
	return r.w.SetReason(j.ID, reason)
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

// sweep fails every job without progress for timeout, with reason "timed
// out". Only a site's oldest open job can be stale: a job waiting behind
// another of its site (a later hop, or another product's job) starts its
// clock when that one ends. A job no agent has picked up that may not
// start yet (its window is closed or a freeze holds it) is not stale
// either: its clock starts when it may start (the window's next opening).
func (f *Fleet) sweep(ctx context.Context, now time.Time, timeout time.Duration) error {
	return f.jobs(ctx, now, func(r *jobRun) error {
		idle, err := r.tx.OpenJobsIdleSince(now.Add(-timeout))
		if err != nil {
			return err
		}
		head := map[string]string{} // site -> its oldest open job, before this sweep
		for _, j := range idle {
			h, ok := head[j.Site]
			if !ok {
				open, err := r.tx.OpenJobs(j.Site)
				if err != nil {
					return err
				}
				h = open[0].ID
				head[j.Site] = h
			}
			if h != j.ID {
				continue
			}
			if waiting, err := r.waitsForWindow(ctx, f.Store, j); err != nil || waiting {
				if err != nil {
					return err
				}
				continue
			}
			if err := r.finish(j, protocol.ResultFailed, reasonTimedOut, false); err != nil {
				return err
			}
		}
		return nil
	})
}

// waitsForWindow reports whether job j, no agent has picked up, may not
// start yet (its site's window is closed, or a freeze holds it), and then
// moves its clock to when it may start: the wait is not a timeout.
func (r *jobRun) waitsForWindow(ctx context.Context, s *store.Store, j store.JobRow) (bool, error) {
	if j.PickedUp || j.Now || j.Result != protocol.ResultPending {
		return false, nil
	}
	ws, err := maint.Checkin(ctx, s, r.now, j.Site, false)
	if err != nil || ws.Open {
		return false, err
	}
	from := r.now
	if ws.NextOpen != nil && ws.NextOpen.After(from) {
		from = *ws.NextOpen
	}
	return true, r.tx.Progress(j.ID, from)
}
