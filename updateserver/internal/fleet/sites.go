package fleet

import (
	"context"
	"errors"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/fault"
	"github.com/dropless/dropless/updateserver/internal/store"
)

// Site returns a site with its current and last job.
func (f *Fleet) Site(ctx context.Context, name string) (protocol.Site, error) {
	st, err := f.Store.GetSite(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return st, fault.New(fault.NotFound, "site %s is not enrolled: see sites list", name)
	}
	if err != nil {
		return st, err
	}
	jobs, err := f.Store.SiteJobs(ctx, name, "", 10)
	if err != nil {
		return st, err
	}
	for i := range jobs {
		j := jobs[i]
		if j.Result == protocol.ResultPending || j.Result == protocol.ResultRunning {
			if st.CurrentJob == nil {
				st.CurrentJob = &j
			}
		} else if st.LastJob == nil {
			st.LastJob = &j
		}
	}
	for _, j := range []*protocol.Job{st.CurrentJob, st.LastJob} {
		if j == nil {
			continue
		}
		if j.Events, err = f.Store.JobEvents(ctx, j.ID); err != nil {
			return st, err
		}
		j.DowntimeMS = Downtime(*j)
	}
	one := []protocol.Site{st}
	err = f.Annotate(ctx, one, store.SiteFilter{})
	return one[0], err
}

// History paging: how many jobs a page holds by default and at most.
const (
	DefaultHistoryLimit = 20
	MaxHistoryLimit     = 50
)

// HistoryPage is one page of a site's jobs, newest first, without their
// events (JobEvents reads them one job at a time, so a page never holds
// more than one job's events in memory). Next is the cursor of the page
// after it ("" on the last page).
type HistoryPage struct {
	Jobs []protocol.Job
	Next string
}

// History returns up to limit of a site's jobs older than job before
// ("" for the newest), newest first.
func (f *Fleet) History(ctx context.Context, site, before string, limit int) (HistoryPage, error) {
	if limit < 1 || limit > MaxHistoryLimit {
		return HistoryPage{}, fault.New(fault.Invalid, "limit %d: give a number from 1 to %d", limit, MaxHistoryLimit)
	}
	if _, err := f.Store.GetSite(ctx, site); errors.Is(err, store.ErrNotFound) {
		return HistoryPage{}, fault.New(fault.NotFound, "site %s is not enrolled: see sites list", site)
	} else if err != nil {
		return HistoryPage{}, err
	}
	jobs, err := f.Store.SiteJobs(ctx, site, before, limit+1)
	if errors.Is(err, store.ErrBadCursor) {
		return HistoryPage{}, fault.New(fault.Invalid, "before %s is not a job of site %s: give a job ID from its history", before, site)
	}
	if err != nil {
		return HistoryPage{}, err
	}
	p := HistoryPage{Jobs: jobs}
	if len(jobs) > limit {
		p.Jobs, p.Next = jobs[:limit], jobs[limit-1].ID
	}
	return p, nil
}

// JobEvents returns a job's events (at most store.MaxJobEvents).
func (f *Fleet) JobEvents(ctx context.Context, id string) ([]protocol.Event, error) {
	return f.Store.JobEvents(ctx, id)
}

// Annotate sets what support sees of each site beyond its agent's
// report: online (checked in within three poll intervals), the newest
// ended job's result and reason, and, while a job of the site runs,
// state "upgrading" and the step it is at ("pending" while one waits).
// f selects the same sites as the list (it bounds the reads).
func (f *Fleet) Annotate(ctx context.Context, sites []protocol.Site, filter store.SiteFilter) error {
	if len(sites) == 0 {
		return nil
	}
	if len(sites) == 1 {
		filter = store.SiteFilter{Client: sites[0].Client, Product: sites[0].Product}
	}
	sums, err := f.Store.JobSummaries(ctx, filter)
	if err != nil {
		return err
	}
	for i := range sites {
		st := &sites[i]
		st.Online = f.Online(*st)
		sum := sums[st.Site]
		st.LastResult, st.LastReason = sum.LastResult, sum.LastReason
		switch sum.OpenResult {
		case protocol.ResultRunning:
			st.State, st.Step = protocol.SiteUpgrading, sum.Step
		case protocol.ResultPending:
			st.State = protocol.SitePending
		}
	}
	return nil
}

// Downtime is how long a job kept the app down, in milliseconds, from
// its events: from its first stopping event to its committed (the new
// version healthy) or rolled_back (the old one back) event; 0 when the
// job ended without stopping the app; nil while unknown (the job has not
// ended, its rollback failed, or the cap dropped the events that tell).
func Downtime(j protocol.Job) *int64 {
	if j.Result == protocol.ResultPending || j.Result == protocol.ResultRunning {
		return nil
	}
	var stopped, back *protocol.Event
	for i := range j.Events {
		e := &j.Events[i]
		switch e.State {
		case protocol.StateStopping:
			if stopped == nil {
				stopped = e
			}
		case protocol.StateCommitted, protocol.StateRolledBack:
			back = e
		}
	}
	switch {
	case stopped == nil && j.EventsDropped == 0:
		zero := int64(0)
		return &zero
	case stopped == nil || back == nil || back.At.Before(stopped.At):
		return nil
	}
	ms := back.At.Sub(stopped.At).Milliseconds()
	return &ms
}
