package fleet

import (
	"fmt"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/store"
)

// The agents' job-event reports, applied together. At a trigger round's
// start thousands of agents report the last round's job done at once,
// and the next upgrade waits behind their reports in the store's writer
// (job transactions keep their order). One report alone is a dozen
// statements (read the job, insert its events, update the job, trim,
// outbox, notifications); the writer hands the reports queued one after
// the other to applyReports together (store.JobBatch), which runs the
// same rules (jobs.go) for each report, in order, on rows read for all
// of them at once, keeps the jobs' changes in memory (jobBatch) and
// writes them, the events, the outbox rows and the notifications in a
// few statements for all. A report still gets its own answer: how many
// of its events were new, or its own error (an event of another site's
// job refuses that report alone), once the whole batch committed.

// eventReport is one site's report of job events, an item of the batch.
type eventReport struct {
	site   string
	events []protocol.Event
	now    time.Time
	// Set by the transaction that applied it: its new events, and its
	// run (the signals to emit once committed).
	added int
	run   *jobRun
}

// jobWrites is what the rules write of jobs and read back while they
// run: *store.JobTx writes at once, a jobBatch in memory.
type jobWrites interface {
	OpenJobs(site string) ([]store.JobRow, error)
	StartJob(id string, startedAt, now time.Time) error
	Progress(id string, now time.Time) error
	EndJob(id, result, reason string, now time.Time) error
	SetReason(id, reason string) error
	LastEventMessage(id, state string) (string, error)
}

// eventReports is the fleet's store.JobBatch of event reports.
func (f *Fleet) eventReports() *store.JobBatch {
	f.reportsOnce.Do(func() { f.reports = &store.JobBatch{Apply: f.applyReports} })
	return f.reports
}

// applyReports applies event reports (*eventReport, of different sites)
// in t: what recordEvents does for each, in a few statements for all.
func (f *Fleet) applyReports(t *store.JobTx, items []any) ([]error, error) {
	reps := make([]*eventReport, len(items))
	var ids []string
	named := map[string]bool{}
	for i, it := range items {
		reps[i] = it.(*eventReport)
		reps[i].added, reps[i].run = 0, nil
		for _, e := range reps[i].events {
			if !named[e.JobID] {
				named[e.JobID] = true
				ids = append(ids, e.JobID)
			}
		}
	}
	jobs, err := t.JobsOf(ids)
	if err != nil {
		return nil, err
	}
	b := &jobBatch{rows: map[string]*store.JobRow{}, open: map[string][]string{}, dirty: map[string]bool{}}
	errs := make([]error, len(reps))
	// Each report's events to store: an event of a job not the site's
	// refuses its report; one the cap dropped since, or a second
	// (job, seq) of the report, was delivered before.
	var evs []store.NewEvent
	var ending, rollingBack []string // sites with a terminal event, jobs with a rolled_back one
	for i, rep := range reps {
		var mine []store.NewEvent
		have := map[store.EventKey]bool{}
		ends := false
		for _, e := range rep.events {
			j, ok := jobs[e.JobID]
			if !ok || j.Site != rep.site {
				errs[i] = notSitesJob(e.JobID, rep.site)
				break
			}
			k := store.EventKey{JobID: e.JobID, Seq: e.Seq}
			if e.Seq <= j.EventsDroppedThrough || have[k] {
				continue
			}
			have[k] = true
			mine = append(mine, store.NewEvent{Event: e, ReceivedAt: rep.now})
			if result := finalResult(e.State); result != "" {
				ends = true
				if result == protocol.ResultRolledBack {
					rollingBack = append(rollingBack, e.JobID)
				}
			}
		}
		if errs[i] != nil {
			continue
		}
		evs = append(evs, mine...)
		if ends {
			ending = append(ending, rep.site)
		}
	}
	for id, j := range jobs {
		b.rows[id] = &j
	}
	open, err := t.OpenJobsOf(ending)
	if err != nil {
		return nil, err
	}
	for site, js := range open {
		for _, j := range js {
			if _, ok := b.rows[j.ID]; !ok {
				b.rows[j.ID] = &j
			}
			b.open[site] = append(b.open[site], j.ID)
		}
	}
	// Read before the events are stored: each new rolling_back event
	// is added as the rules reach it (eventAdded), as they would read it.
	if b.last, err = t.LastEventMessages(rollingBack, protocol.StateRollingBack); err != nil {
		return nil, err
	}
	added, err := t.AddEvents(evs)
	if err != nil {
		return nil, err
	}
	// The rules, report by report in order, on the rows in memory.
	var moved []string
	var all jobRun
	all.tx = t
	for i, rep := range reps {
		if errs[i] != nil {
			continue
		}
		r := &jobRun{tx: t, w: b, now: rep.now}
		seen := map[string]*seenJob{}
		var order []string
		for _, e := range rep.events {
			k := store.EventKey{JobID: e.JobID, Seq: e.Seq}
			if !added[k] {
				continue // delivered before (or dropped by the cap since)
			}
			delete(added, k) // a second (job, seq) of the report is not new
			sj, ok := seen[e.JobID]
			if !ok {
				sj = &seenJob{row: *b.rows[e.JobID]}
				seen[e.JobID] = sj
				order = append(order, e.JobID)
			}
			rep.added++
			if e.State == protocol.StateRollingBack {
				if l, ok := b.last[e.JobID]; !ok || e.Seq > l.Seq {
					b.last[e.JobID] = store.EventMessage{Seq: e.Seq, Message: e.Message}
				}
			}
			if err := r.eventAdded(sj, e); err != nil {
				return nil, err
			}
		}
		for _, id := range order {
			if seen[id].moved {
				moved = append(moved, id)
			}
		}
		rep.run = r
		all.out = append(all.out, r.out...)
		all.rollouts = append(all.rollouts, r.rollouts...)
		if rep.now.After(all.now) {
			all.now = rep.now
		}
	}
	if err := b.write(t); err != nil {
		return nil, err
	}
	if err := t.TrimEventsOf(moved); err != nil {
		return nil, err
	}
	return errs, f.tell(&all)
}

// jobBatch is jobWrites in memory, for a batch of reports: the jobs they
// name, read at its start, changed as the rules go, written together at
// its end (write).
type jobBatch struct {
	rows map[string]*store.JobRow
	// open is each site's open jobs at the start, oldest first (the sites
	// whose reports end a job).
	open map[string][]string
	// last is each job's newest rolling_back event, read and stored.
	last  map[string]store.EventMessage
	dirty map[string]bool
	order []string // dirty's jobs, in the order they changed
}

func (b *jobBatch) row(id string) (*store.JobRow, error) {
	j, ok := b.rows[id]
	if !ok {
		return nil, fmt.Errorf("job %s is not in the batch", id)
	}
	if !b.dirty[id] {
		b.dirty[id] = true
		b.order = append(b.order, id)
	}
	return j, nil
}

func (b *jobBatch) OpenJobs(site string) ([]store.JobRow, error) {
	ids, ok := b.open[site]
	if !ok {
		return nil, fmt.Errorf("site %s's open jobs are not in the batch", site)
	}
	var out []store.JobRow
	for _, id := range ids {
		if j := b.rows[id]; j.Open() {
			out = append(out, *j)
		}
	}
	return out, nil
}

func (b *jobBatch) StartJob(id string, startedAt, now time.Time) error {
	j, err := b.row(id)
	if err != nil {
		return err
	}
	j.Result = protocol.ResultRunning
	if j.StartedAt == nil {
		j.StartedAt = &startedAt
	}
	j.LastProgressAt = now
	return nil
}

func (b *jobBatch) Progress(id string, now time.Time) error {
	j, err := b.row(id)
	if err == nil {
		j.LastProgressAt = now
	}
	return err
}

func (b *jobBatch) EndJob(id, result, reason string, now time.Time) error {
	j, err := b.row(id)
	if err != nil {
		return err
	}
	j.Result, j.Reason, j.EndedAt = result, reason, &now
	if j.StartedAt == nil {
		j.StartedAt = &now
	}
	return nil
}

func (b *jobBatch) SetReason(id, reason string) error {
	j, err := b.row(id)
	if err == nil {
		j.Reason = reason
	}
	return err
}

func (b *jobBatch) LastEventMessage(id, state string) (string, error) {
	if state != protocol.StateRollingBack {
		return "", fmt.Errorf("the batch keeps the last %s event only", protocol.StateRollingBack)
	}
	return b.last[id].Message, nil
}

// write writes the jobs the rules changed.
func (b *jobBatch) write(t *store.JobTx) error {
	rows := make([]store.JobRow, len(b.order))
	for i, id := range b.order {
		rows[i] = *b.rows[id]
	}
	return t.UpdateJobs(rows)
}
