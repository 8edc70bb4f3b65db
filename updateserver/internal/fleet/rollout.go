package fleet

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/pkg/versions"
	"github.com/dropless/dropless/updateserver/internal/fault"
	"github.com/dropless/dropless/updateserver/internal/store"
)

// Rollouts, support's side: create, list, show, pause, resume, cancel.
// The scheduler that starts their sites is in rollout_sched.go, the wave
// arithmetic in rollout_plan.go.

// MaxRolloutSites bounds the sites of one rollout.
const MaxRolloutSites = 100000

// CreateRollout creates a rollout of req.Version over its sites and
// returns it. The scheduler starts its sites.
func (f *Fleet) CreateRollout(ctx context.Context, req protocol.RolloutRequest, actor string) (protocol.Rollout, error) {
	ro, sites, err := f.checkRollout(ctx, &req)
	if err != nil {
		return protocol.Rollout{}, err
	}
	canary := req.Canary
	in := map[string]bool{}
	for _, c := range canary {
		in[c] = true
	}
	var rest []string
	for _, s := range sites {
		if !in[s] {
			in[s] = true
			rest = append(rest, s)
		}
	}
	waves := PlanWaves(rest, canary, ro.Waves)
	var rows []store.NewRolloutSite
	for w, names := range waves {
		for _, s := range names {
			rows = append(rows, store.NewRolloutSite{Site: s, Wave: w})
		}
	}
	if len(rows) > MaxRolloutSites {
		return protocol.Rollout{}, fault.New(fault.Invalid, "%d sites in one rollout; at most %d: split it by client", len(rows), MaxRolloutSites)
	}
	now := f.now()
	ro.CreatedAt, ro.CreatedBy, ro.State, ro.WaveAt = now, actor, protocol.RolloutRunning, now
	err = f.jobs(ctx, now, func(r *jobRun) error {
		busy, err := r.tx.ActiveRolloutSites(ro.Product)
		if err != nil {
			return err
		}
		var clash []string
		var other int64
		for _, rs := range rows {
			if id, ok := busy[rs.Site]; ok {
				clash, other = append(clash, rs.Site), id
			}
		}
		if len(clash) > 0 {
			return fault.New(fault.Conflict, "%s already in rollout %d of %s (a site is in one running or paused rollout of a product at a time): wait for it to complete, cancel it, or leave %s out",
				namesAnd(clash, 3, "site", "sites"), other, ro.Product, pronoun(clash))
		}
		if ro.ID, err = r.tx.CreateRollout(ro, rows); err != nil {
			return err
		}
		r.rolloutChanged(store.RolloutRow{}, ro, actor)
		return r.tx.Audit(r.now, store.Audit{Actor: actor, Action: "rollout.create", Object: rolloutName(ro.ID),
			Detail: fmt.Sprintf("product=%s version=%s sites=%d waves=%s canary=%s max_parallel=%d max_failures=%s soak=%s hold=%t",
				ro.Product, ro.Version, len(rows), fmtWaves(ro.Waves), strings.Join(canary, ","), ro.MaxParallel, ro.MaxFailures, ro.Soak, ro.Hold)})
	})
	if err != nil {
		return protocol.Rollout{}, err
	}
	f.kickRollouts()
	return f.rollout(ctx, ro.ID, false)
}

// checkRollout checks a rollout request, fills its defaults, and returns
// the rollout to store and its sites (without the canaries' order).
func (f *Fleet) checkRollout(ctx context.Context, req *protocol.RolloutRequest) (store.RolloutRow, []string, error) {
	var ro store.RolloutRow
	if err := validName("product", req.Product); err != nil {
		return ro, nil, err
	}
	if _, err := versions.Parse(req.Version); err != nil {
		return ro, nil, fault.Wrap(fault.Invalid, err)
	}
	n := 0
	for _, given := range []bool{req.Channel != "", len(req.Clients) > 0, len(req.Sites) > 0} {
		if given {
			n++
		}
	}
	if n != 1 {
		return ro, nil, fault.New(fault.Invalid, "give the rollout's sites with exactly one of channel, clients or sites")
	}
	if len(req.Waves) == 0 {
		req.Waves = DefaultWaves
	}
	if err := CheckWaves(req.Waves); err != nil {
		return ro, nil, fault.Wrap(fault.Invalid, err)
	}
	if req.MaxParallel == 0 {
		req.MaxParallel = DefaultMaxParallel
	}
	if req.MaxParallel < 0 || req.MaxParallel > MaxRolloutSites {
		return ro, nil, fault.New(fault.Invalid, "max parallel %d: give how many sites may upgrade at once, from 1 to %d", req.MaxParallel, MaxRolloutSites)
	}
	if req.MaxFailures == "" {
		req.MaxFailures = DefaultMaxFailures
	}
	if _, err := ParseMaxFailures(req.MaxFailures); err != nil {
		return ro, nil, fault.Wrap(fault.Invalid, err)
	}
	if req.SoakSeconds < 0 || req.SoakSeconds > 366*24*3600 {
		return ro, nil, fault.New(fault.Invalid, "soak %ds: give a duration from 0 to a year", req.SoakSeconds)
	}
	releases, err := f.Store.ListReleases(ctx, store.ReleaseFilter{Product: req.Product})
	if err != nil {
		return ro, nil, err
	}
	found := false
	for _, r := range releases {
		if versions.Equal(r.Version, req.Version) {
			if r.Yanked {
				return ro, nil, fault.New(fault.Conflict, "%s %s is yanked (%s): a rollout never assigns a yanked release; publish a fixed one",
					r.Product, r.Version, orNone(r.YankReason))
			}
			found, req.Version = true, r.Version
		}
	}
	if !found {
		return ro, nil, fault.New(fault.NotFound, "%s %s is not published: see release list --product %s", req.Product, req.Version, req.Product)
	}
	var sites []string
	switch {
	case req.Channel != "":
		if err := validName("channel", req.Channel); err != nil {
			return ro, nil, err
		}
		if sites, err = f.Store.SitesFollowing(ctx, req.Product, req.Channel); err != nil {
			return ro, nil, err
		}
		if len(sites) == 0 {
			return ro, nil, fault.New(fault.NotFound, "no site of %s follows channel %s: see sites list", req.Product, req.Channel)
		}
	case len(req.Clients) > 0:
		filter := req.Product
		if filter == AgentProduct {
			filter = ""
		}
		for _, c := range req.Clients {
			if err := validName("client", c); err != nil {
				return ro, nil, err
			}
			names, err := f.Store.SiteNames(ctx, store.SiteFilter{Client: c, Product: filter})
			if err != nil {
				return ro, nil, err
			}
			if len(names) == 0 {
				return ro, nil, fault.New(fault.NotFound, "client %s has no enrolled site of %s: see sites list --client %s", c, req.Product, c)
			}
			sites = append(sites, names...)
		}
	default:
		sites = req.Sites
	}
	for _, list := range [][]string{req.Sites, req.Canary} {
		for _, s := range list {
			if err := f.checkRolloutSite(ctx, s, req.Product); err != nil {
				return ro, nil, err
			}
		}
	}
	req.Canary = dedupe(req.Canary)
	ro = store.RolloutRow{Product: req.Product, Version: req.Version, Waves: req.Waves, Canary: len(req.Canary) > 0, MaxParallel: req.MaxParallel,
		MaxFailures: strings.TrimSpace(req.MaxFailures), Soak: time.Duration(req.SoakSeconds) * time.Second, Hold: req.HoldBetweenWaves}
	return ro, sites, nil
}

// checkRolloutSite checks that a site named in a rollout runs its
// product (every site runs the agent).
func (f *Fleet) checkRolloutSite(ctx context.Context, site, product string) error {
	if err := validName("site", site); err != nil {
		return err
	}
	st, err := f.Store.GetSite(ctx, site)
	if errors.Is(err, store.ErrNotFound) {
		return fault.New(fault.NotFound, "site %s is not enrolled: see sites list", site)
	}
	if err != nil {
		return err
	}
	if st.Product != product && product != AgentProduct {
		return fault.New(fault.Invalid, "site %s runs %s, not %s: leave it out of this rollout", site, st.Product, product)
	}
	return nil
}

func dedupe(names []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, n := range names {
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out
}

// namesAnd names up to max of names: "site a", "sites a, b and 3 more".
func namesAnd(names []string, max int, one, many string) string {
	if len(names) == 1 {
		return one + " " + names[0] + " is"
	}
	shown := names[:min(len(names), max)]
	s := many + " " + strings.Join(shown, ", ")
	if len(names) > max {
		s += fmt.Sprintf(" and %d more", len(names)-max)
	}
	return s + " are"
}

func pronoun(names []string) string {
	if len(names) == 1 {
		return "it"
	}
	return "them"
}

func rolloutName(id int64) string { return "rollout " + strconv.FormatInt(id, 10) }

func fmtWaves(ws []float64) string {
	s := make([]string, len(ws))
	for i, w := range ws {
		s[i] = fmtPct(w) + "%"
	}
	return strings.Join(s, ",")
}

// rolloutNotFound is the error for an unknown rollout ID.
func rolloutNotFound(id int64) error {
	return fault.New(fault.NotFound, "no rollout has ID %d: see rollout list", id)
}

// Rollout returns one rollout with its waves and their sites.
func (f *Fleet) Rollout(ctx context.Context, id int64) (protocol.Rollout, error) {
	return f.rollout(ctx, id, true)
}

// rollout returns one rollout, with its waves and sites when detail.
func (f *Fleet) rollout(ctx context.Context, id int64, detail bool) (protocol.Rollout, error) {
	ro, err := f.Store.Rollout(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return protocol.Rollout{}, rolloutNotFound(id)
	}
	if err != nil {
		return protocol.Rollout{}, err
	}
	sites, err := f.Store.RolloutSites(ctx, id)
	if err != nil {
		return protocol.Rollout{}, err
	}
	return summarize(ro, sites, detail), nil
}

// Rollouts lists the rollouts, newest first, without their sites.
func (f *Fleet) Rollouts(ctx context.Context) ([]protocol.Rollout, error) {
	all, err := f.Store.Rollouts(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]protocol.Rollout, 0, len(all))
	for _, ro := range all {
		sites, err := f.Store.RolloutSites(ctx, ro.ID)
		if err != nil {
			return nil, err
		}
		out = append(out, summarize(ro, sites, false))
	}
	return out, nil
}

// siteStatus says where a site of a rollout is, from the outcome
// recorded without a job and its jobs of the rollout (the hops of its
// upgrade): the first hop that did not succeed fails it.
func siteStatus(rs store.RolloutSiteRow, rolloutState string) protocol.RolloutSite {
	out := protocol.RolloutSite{Site: rs.Site, Status: rs.Outcome, Reason: rs.Reason}
	if rs.Outcome != "" {
		return out
	}
	if len(rs.Jobs) == 0 {
		out.Status = protocol.RolloutSiteWaiting
		if rolloutState == protocol.RolloutCancelled {
			out.Status = protocol.RolloutSiteCancelled
		}
		return out
	}
	out.JobID = rs.Jobs[len(rs.Jobs)-1].ID
	out.Status = protocol.RolloutSiteSucceeded
	for _, j := range rs.Jobs {
		switch j.Result {
		case protocol.ResultFailed, protocol.ResultRolledBack:
			out.Status, out.JobID = protocol.RolloutSiteFailed, j.ID
			out.Reason = "job " + j.ID + " " + strings.ReplaceAll(j.Result, "_", " ")
			if j.Reason != "" {
				out.Reason += ": " + j.Reason
			}
			return out
		case protocol.ResultRunning:
			out.Status = protocol.RolloutSiteRunning
		case protocol.ResultPending:
			if out.Status != protocol.RolloutSiteRunning {
				out.Status = protocol.RolloutSitePending
			}
		}
	}
	return out
}

// tally is the count of a rollout's sites by where they are.
type tally struct {
	started, inflight, failures int
	failed                      []protocol.RolloutSite
	// busy: the wave has sites waiting, pending or running.
	busy map[int]bool
	// last is the last wave.
	last int
}

func count(ro store.RolloutRow, sites []store.RolloutSiteRow) (tally, []protocol.RolloutSite) {
	t := tally{busy: map[int]bool{}}
	statuses := make([]protocol.RolloutSite, len(sites))
	for i, rs := range sites {
		st := siteStatus(rs, ro.State)
		statuses[i] = st
		t.last = max(t.last, rs.Wave)
		switch st.Status {
		case protocol.RolloutSiteWaiting:
			t.busy[rs.Wave] = true
			continue
		case protocol.RolloutSiteCancelled:
			continue
		case protocol.RolloutSitePending, protocol.RolloutSiteRunning:
			t.inflight++
			t.busy[rs.Wave] = true
		case protocol.RolloutSiteFailed:
			t.failures++
			t.failed = append(t.failed, st)
		}
		t.started++
	}
	return t, statuses
}

func summarize(ro store.RolloutRow, sites []store.RolloutSiteRow, detail bool) protocol.Rollout {
	t, statuses := count(ro, sites)
	out := protocol.Rollout{ID: ro.ID, Product: ro.Product, Version: ro.Version, State: ro.State, PauseReason: ro.Reason,
		Waves: ro.Waves, Canary: ro.Canary, MaxParallel: ro.MaxParallel, MaxFailures: ro.MaxFailures, SoakSeconds: int64(ro.Soak / time.Second),
		HoldBetweenWaves: ro.Hold, CurrentWave: ro.Wave, Sites: len(sites), Started: t.started, Failures: t.failures, FailedSites: []string{},
		CreatedAt: ro.CreatedAt, CreatedBy: ro.CreatedBy, EndedAt: ro.EndedAt}
	if ro.State != protocol.RolloutPaused {
		out.PauseReason = ""
	}
	if ro.State == protocol.RolloutRunning || ro.State == protocol.RolloutPaused {
		at := ro.WaveAt
		out.NextWaveAt = &at
	}
	for _, s := range t.failed {
		out.FailedSites = append(out.FailedSites, s.Site)
	}
	if !detail {
		return out
	}
	out.WaveDetail = []protocol.RolloutWave{}
	for i, rs := range sites {
		for len(out.WaveDetail) <= rs.Wave {
			w := len(out.WaveDetail)
			out.WaveDetail = append(out.WaveDetail, protocol.RolloutWave{Wave: w, Canary: ro.Canary && w == 0, Sites: []protocol.RolloutSite{}})
		}
		w := &out.WaveDetail[rs.Wave]
		st := statuses[i]
		w.Sites = append(w.Sites, st)
		switch st.Status {
		case protocol.RolloutSiteWaiting:
			w.Waiting++
		case protocol.RolloutSitePending:
			w.Pending++
		case protocol.RolloutSiteRunning:
			w.Running++
		case protocol.RolloutSiteSucceeded:
			w.Succeeded++
		case protocol.RolloutSiteFailed:
			w.Failed++
		case protocol.RolloutSiteCancelled:
			w.Cancelled++
		}
	}
	return out
}

// changeRollout runs change on rollout id inside a job transaction, then
// audits action by actor with the detail change returns.
func (f *Fleet) changeRollout(ctx context.Context, id int64, actor, action string, change func(r *jobRun, ro *store.RolloutRow) (string, error)) error {
	return f.jobs(ctx, f.now(), func(r *jobRun) error {
		ro, err := r.tx.Rollout(id)
		if errors.Is(err, store.ErrNotFound) {
			return rolloutNotFound(id)
		}
		if err != nil {
			return err
		}
		before := ro
		detail, err := change(r, &ro)
		if err != nil {
			return err
		}
		if err := r.tx.UpdateRollout(ro); err != nil {
			return err
		}
		r.rolloutChanged(before, ro, actor)
		return r.tx.Audit(r.now, store.Audit{Actor: actor, Action: action, Object: rolloutName(id), Detail: detail})
	})
}

// notIn refuses a change of a rollout that is not in one of states.
func notIn(ro store.RolloutRow, verb string, states ...string) error {
	for _, s := range states {
		if ro.State == s {
			return nil
		}
	}
	return fault.New(fault.Conflict, "rollout %d is %s: only a %s rollout can be %s", ro.ID, ro.State, strings.Join(states, " or "), verb)
}

// PauseRollout pauses a running rollout: no new site starts; running
// jobs finish.
func (f *Fleet) PauseRollout(ctx context.Context, id int64, actor string) (protocol.Rollout, error) {
	err := f.changeRollout(ctx, id, actor, "rollout.pause", func(_ *jobRun, ro *store.RolloutRow) (string, error) {
		if err := notIn(*ro, "paused", protocol.RolloutRunning); err != nil {
			return "", err
		}
		ro.State, ro.Reason = protocol.RolloutPaused, "paused by "+actor
		return "", nil
	})
	if err != nil {
		return protocol.Rollout{}, err
	}
	return f.Rollout(ctx, id)
}

// ResumeRollout resumes a paused rollout: it goes on where it was, its
// failures still counted; the next failure past max failures pauses it
// again.
func (f *Fleet) ResumeRollout(ctx context.Context, id int64, actor string) (protocol.Rollout, error) {
	sites, err := f.Store.RolloutSites(ctx, id)
	if err != nil {
		return protocol.Rollout{}, err
	}
	err = f.changeRollout(ctx, id, actor, "rollout.resume", func(_ *jobRun, ro *store.RolloutRow) (string, error) {
		if err := notIn(*ro, "resumed", protocol.RolloutPaused); err != nil {
			return "", err
		}
		t, _ := count(*ro, sites)
		detail := fmt.Sprintf("wave=%d failures=%d paused=%q", ro.Wave, t.failures, ro.Reason)
		ro.State, ro.Reason, ro.FailuresSeen = protocol.RolloutRunning, "", max(ro.FailuresSeen, t.failures)
		return detail, nil
	})
	if err != nil {
		return protocol.Rollout{}, err
	}
	f.kickRollouts()
	return f.Rollout(ctx, id)
}

// CancelRollout cancels a running or paused rollout at once: its jobs no
// agent has picked up end cancelled, its sites not started never start,
// and it ends cancelled. Jobs already in an agent's hands run to their
// end.
func (f *Fleet) CancelRollout(ctx context.Context, id int64, actor string) (protocol.Rollout, error) {
	err := f.changeRollout(ctx, id, actor, "rollout.cancel", func(r *jobRun, ro *store.RolloutRow) (string, error) {
		if err := notIn(*ro, "cancelled", protocol.RolloutRunning, protocol.RolloutPaused); err != nil {
			return "", err
		}
		reason := "cancelled: " + rolloutName(id) + " was cancelled by " + actor
		jobs, err := r.tx.RolloutJobsNotStarted(id)
		if err != nil {
			return "", err
		}
		n := 0
		for _, j := range jobs {
			// Re-read: cancelling a hop cancels the hops after it.
			if j, err = r.tx.Job(j.ID); err != nil {
				return "", err
			}
			if j.Result != protocol.ResultPending {
				continue
			}
			if err := r.finish(j, protocol.ResultFailed, reason, false); err != nil {
				return "", err
			}
			n++
		}
		if err := r.tx.CancelWaitingRolloutSites(id, "the rollout was cancelled by "+actor); err != nil {
			return "", err
		}
		now := r.now
		ro.State, ro.Reason, ro.EndedAt = protocol.RolloutCancelled, "", &now
		return fmt.Sprintf("jobs_cancelled=%d", n), nil
	})
	if err != nil {
		return protocol.Rollout{}, err
	}
	return f.Rollout(ctx, id)
}
