package fleet

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/pkg/versions"
	"github.com/dropless/dropless/updateserver/internal/fault"
	"github.com/dropless/dropless/updateserver/internal/maint"
	"github.com/dropless/dropless/updateserver/internal/store"
)

// Checkin records an agent's report and answers with its assignment. With
// wait > 0 it holds the call until the site has an assignment the agent
// does not know yet, or wait runs out.
//
// The assignment is the site's oldest open job, of its product or of the
// agent itself: an agent is handed one job at a time (jobs.go).
//
// A job's result is what the agent reports about that job, by its ID:
// nothing is inferred from the installed version. A job handed out in
// the answer is recorded as picked up before the answer leaves, so that
// an upgrade made meanwhile cannot supersede it.
func (f *Fleet) Checkin(ctx context.Context, site string, req protocol.CheckinRequest, wait time.Duration) (protocol.CheckinResponse, error) {
	return f.CheckinCharged(ctx, site, req, wait, nil)
}

// CheckinCharged is Checkin, calling charge first when the check-in
// costs a write: a report that differs from what the store holds, or a
// job's progress or result. One that changes nothing costs none (its
// time is kept in memory; store.Store.Checkin) and is not charged. An
// error from charge is returned as it is, and nothing is recorded.
func (f *Fleet) CheckinCharged(ctx context.Context, site string, req protocol.CheckinRequest, wait time.Duration, charge func() error) (protocol.CheckinResponse, error) {
	if err := validateCheckin(&req); err != nil {
		return protocol.CheckinResponse{}, err
	}
	if charge != nil && (req.Job != nil || f.Store.CheckinWrites(site, req)) {
		if err := charge(); err != nil {
			return protocol.CheckinResponse{}, err
		}
	}
	now := f.now()
	// A job's progress and result, and the report that goes with them,
	// are committed before the answer; any other report is written
	// after it (store_reports.go).
	var err error
	if req.Job != nil {
		_, err = f.Store.Checkin(ctx, now, site, req)
	} else {
		_, err = f.Store.CheckinNoWait(now, site, req)
	}
	if err != nil {
		return protocol.CheckinResponse{}, err
	}
	known := ""
	if j := req.Job; j != nil {
		known = j.ID
		switch j.Result {
		case protocol.ResultSucceeded, protocol.ResultRolledBack, protocol.ResultFailed:
			if err := f.reportEnd(ctx, now, site, j.ID, j.Result); err != nil {
				return protocol.CheckinResponse{}, err
			}
		default:
			// The agent works on this job: it has picked it up.
			if open, err := f.Store.OpenJob(ctx, site); err == nil && open.Job.ID == j.ID && !open.HandedOut {
				if _, err := f.pickUp(ctx, site, j.ID); err != nil {
					return protocol.CheckinResponse{}, err
				}
			}
		}
	}
	deadline := time.Now().Add(wait)
	for {
		// Subscribe before reading, so a job created in between wakes us
		// (only a call that may wait: an answer at once needs no wake-up).
		var ch chan *wakeUp
		if wait > 0 {
			ch = f.hub.subscribe(site)
		}
		resp, handedOut, err := f.assignment(ctx, site)
		if err != nil {
			f.hub.unsubscribe(site, ch)
			return resp, err
		}
		// A job is handed out only while it may start (its window is
		// open and no freeze applies, or it was made with --now).
		if resp.Assignment != nil && resp.Assignment.JobID != known && resp.Window.Open {
			f.hub.unsubscribe(site, ch)
			ok, err := f.handOut(ctx, site, resp.Assignment.JobID, handedOut)
			if err != nil || ok {
				return resp, err
			}
			continue // superseded meanwhile: read the new one
		}
		remaining := time.Until(deadline)
		if remaining <= 0 {
			f.hub.unsubscribe(site, ch)
			return resp, nil
		}
		if n := resp.Window.NextOpen; !resp.Window.Open && n != nil { // wake at the opening
			remaining = min(remaining, max(n.Sub(f.now()), 10*time.Millisecond))
		}
		t := time.NewTimer(remaining)
		var woke *wakeUp
		select {
		case woke = <-ch: // the notifier removed ch
		case <-t.C:
			f.hub.unsubscribe(site, ch)
		case <-ctx.Done():
			f.hub.unsubscribe(site, ch)
		}
		t.Stop()
		if ctx.Err() != nil {
			return resp, nil
		}
		if woke != nil && woke.a != nil && woke.a.JobID != known && woke.handedOut {
			// Recorded as handed out with the job (handOutHeld).
			resp.Assignment, resp.Window = woke.a, woke.ws
			return resp, nil
		}
		if woke != nil && woke.a != nil && woke.a.JobID != known {
			// The new job and its --now flag, straight from the
			// transaction that created it: a woken agent reads only the
			// site's window (none for --now), not the job.
			ws, err := maint.Checkin(ctx, f.Store, f.now(), site, woke.now)
			if err != nil {
				return resp, err
			}
			if ws.Open {
				ok, err := f.handOut(ctx, site, woke.a.JobID, false)
				if err != nil {
					return resp, err
				}
				if ok {
					resp.Assignment, resp.Window = woke.a, ws
					return resp, nil
				}
			}
		}
	}
}

// handOut records that the site's agent gets job id in this answer,
// unless it was already; false means the job was superseded or ended
// meanwhile and must not be handed out.
func (f *Fleet) handOut(ctx context.Context, site, id string, already bool) (bool, error) {
	if already {
		return true, nil
	}
	return f.pickUp(ctx, site, id)
}

func (f *Fleet) assignment(ctx context.Context, site string) (protocol.CheckinResponse, bool, error) {
	resp := protocol.CheckinResponse{PollSeconds: int(f.PollInterval / time.Second), Window: protocol.WindowStatus{Open: true}}
	open, err := f.Store.OpenJob(ctx, site)
	if errors.Is(err, store.ErrNotFound) {
		resp.Window, err = maint.Checkin(ctx, f.Store, f.now(), site, false)
		return resp, false, err
	}
	if err != nil {
		return resp, false, err
	}
	resp.Assignment = &open.Assignment
	if !open.HandedOut { // a job picked up runs to its end, window or not
		if resp.Window, err = maint.Checkin(ctx, f.Store, f.now(), site, open.Now); err != nil {
			return resp, false, err
		}
	}
	return resp, open.HandedOut, nil
}

// validateCheckin refuses a check-in that breaks the protocol, naming the
// field, and cleans the free text it keeps.
func validateCheckin(req *protocol.CheckinRequest) error {
	if err := req.Validate(); err != nil {
		return fault.New(fault.Invalid, "check-in %v", err)
	}
	if v := req.InstalledVersion; v != "" && !validVersions.has(v) {
		if _, err := versions.Parse(v); err != nil {
			return fault.New(fault.Invalid, "check-in installed_version: %q is not a version", v)
		}
		validVersions.add(v)
	}
	if req.State == "" {
		req.State = protocol.StateIdle
	}
	req.Drift = protocol.CleanDrift(req.Drift)
	return nil
}

// validVersions remembers installed versions that parsed: a fleet
// reports a few versions over and over, and parsing one is a good part of
// an idle check-in's cost. It holds at most maxValidVersions.
var validVersions versionSet

const maxValidVersions = 4096

type versionSet struct {
	m sync.Map
	n atomic.Int32
}

func (s *versionSet) has(v string) bool {
	_, ok := s.m.Load(v)
	return ok
}

func (s *versionSet) add(v string) {
	if s.n.Load() < maxValidVersions {
		if _, loaded := s.m.LoadOrStore(v, struct{}{}); !loaded {
			s.n.Add(1)
		}
	}
}

// Events stores a batch of a site's job events. Messages are kept up to
// protocol.KeepMessage bytes, with control characters escaped.
func (f *Fleet) Events(ctx context.Context, site string, events []protocol.Event) (protocol.EventsResponse, error) {
	if len(events) > MaxEventBatch {
		return protocol.EventsResponse{}, fault.New(fault.Invalid, "%d events in one batch; send at most %d", len(events), MaxEventBatch)
	}
	for i := range events {
		if err := events[i].Validate(i); err != nil {
			return protocol.EventsResponse{}, fault.New(fault.Invalid, "%v", err)
		}
		events[i].Message = protocol.CleanText(events[i].Message, protocol.KeepMessage, true)
	}
	n, err := f.recordEvents(ctx, f.now(), site, events)
	if err != nil {
		return protocol.EventsResponse{}, err
	}
	return protocol.EventsResponse{Accepted: n, Duplicate: len(events) - n}, nil
}

// MaxEventBatch bounds the events of one request.
const MaxEventBatch = 500
