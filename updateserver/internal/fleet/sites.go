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
	}
	return st, nil
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
