package fleet

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	goversion "github.com/hashicorp/go-version"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/pkg/versions"
	"github.com/dropless/dropless/updateserver/internal/fault"
	"github.com/dropless/dropless/updateserver/internal/store"
)

// Sites that follow a channel (this file): a follower is upgraded,
// inside its window and through the planner (multi-hop paths apply), to
// the newest non-yanked release on its channel that its pin admits.
//
// A follow pass decides, for some followers, whether each needs a job:
//   - none when the site runs that release or a newer one, or when a job
//     made by anyone but following is open (support's or a rollout's
//     job wins), or when a job to that release already failed or rolled
//     back on the site (no retry loop: a newer release, or support, moves
//     it on);
//   - a new plan when none is open, or when the open jobs following made
//     lead elsewhere (a newer release came, or one of their hops was
//     yanked): the new jobs supersede them (CreateJobs);
//   - the open jobs following made are cancelled when nothing is
//     admitted any more (the release they lead to was yanked).
//
// Passes run on the follower goroutine (RunFollower), woken by releases
// published, promoted or yanked (ReleaseChanged) and by a follower's job
// ending, after a catch-up pass over every follower at start, so that
// nothing published while the server was down is missed; and at once,
// for the sites concerned, when support sets a follow (Follow). One pass
// runs at a time.

// followCreator is the prefix of the creator of the jobs following
// makes: "follow:CHANNEL".
const followCreator = "follow:"

// reasonFollowCancel starts the reason of a job following cancelled.
const reasonFollowCancel = "cancelled: follow"

// follower is the follow machinery's state inside Fleet.
type follower struct {
	pass sync.Mutex // one pass at a time

	mu    sync.Mutex
	dirty map[string]*dirtySet // product -> what to look at
	wake  chan struct{}
}

// dirtySet is what a product's next pass looks at: all its followers, or
// some sites.
type dirtySet struct {
	all   bool
	sites map[string]bool
}

func (fw *follower) mark(product, site string) {
	fw.mu.Lock()
	if fw.dirty == nil {
		fw.dirty = map[string]*dirtySet{}
	}
	d := fw.dirty[product]
	if d == nil {
		d = &dirtySet{sites: map[string]bool{}}
		fw.dirty[product] = d
	}
	if site == "" {
		d.all = true
	} else {
		d.sites[site] = true
	}
	if fw.wake == nil {
		fw.wake = make(chan struct{}, 1)
	}
	wake := fw.wake
	fw.mu.Unlock()
	select {
	case wake <- struct{}{}:
	default:
	}
}

func (fw *follower) take() map[string]*dirtySet {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	d := fw.dirty
	fw.dirty = nil
	return d
}

func (fw *follower) wakeCh() chan struct{} {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	if fw.wake == nil {
		fw.wake = make(chan struct{}, 1)
	}
	return fw.wake
}

// ReleaseChanged tells the followers of product that one of its
// releases was published, promoted or yanked: a pass over them follows
// on the follower goroutine. It returns at once.
func (f *Fleet) ReleaseChanged(product string) { f.follow.mark(product, "") }

// RunFollower runs follow passes until ctx ends: first over every
// follower (catching up with what was published while the server was
// down), then whenever ReleaseChanged or a follower's job ending asks.
func (f *Fleet) RunFollower(ctx context.Context) {
	cancel := f.Subscribe(func(e JobEvent) {
		// A job that timed out does not wake its site: its agent is
		// away, and a new job would time out too. The next release
		// change or restart tries again.
		if e.Type == JobEnded && e.Reason != reasonTimedOut {
			f.follow.mark(e.Product, e.Site)
		}
	})
	defer cancel()
	wake := f.follow.wakeCh()
	if _, err := f.followPass(ctx, "", nil); err != nil && ctx.Err() == nil {
		f.Log.Error("follow: catching up failed", "err", err)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-wake:
		}
		for product, d := range f.follow.take() {
			var only map[string]bool
			if !d.all {
				only = d.sites
			}
			if _, err := f.followPass(ctx, product, only); err != nil && ctx.Err() == nil {
				f.Log.Error("follow: a pass failed", "product", product, "err", err)
			}
		}
	}
}

// Follow makes a site, or every site a client has now, follow a channel
// with an optional pin, audited; the sites that need a job get it at
// once (returned in the answer).
func (f *Fleet) Follow(ctx context.Context, req protocol.FollowRequest, actor string) (protocol.FollowResponse, error) {
	if err := validName("channel", req.Channel); err != nil {
		return protocol.FollowResponse{}, fault.New(fault.Invalid, "channel %q is not valid: use lower-case letters, digits, '.', '_' and '-' (like stable or hotfix-3.2)", req.Channel)
	}
	if _, _, err := versions.ParsePin(req.Pin); err != nil {
		return protocol.FollowResponse{}, fault.Wrap(fault.Invalid, err)
	}
	pin := strings.Join(strings.Fields(req.Pin), " ")
	sites, target, err := f.followScope(ctx, req.Site, req.Client)
	if err != nil {
		return protocol.FollowResponse{}, err
	}
	names := siteNames(sites)
	detail := "channel=" + req.Channel
	if pin != "" {
		detail += fmt.Sprintf(" pin=%q", pin)
	}
	detail += " sites=" + strings.Join(names, ",")
	if err := f.Store.SetFollow(ctx, f.now(), names, req.Channel, pin, store.Audit{Actor: actor, Action: "sites.follow", Object: target, Detail: detail}); err != nil {
		return protocol.FollowResponse{}, err
	}
	only := map[string]bool{}
	for _, n := range names {
		only[n] = true
	}
	resp := protocol.FollowResponse{Sites: names, Channel: req.Channel, Pin: pin, Jobs: []protocol.Job{}}
	byProduct := map[string]bool{}
	for _, st := range sites {
		byProduct[st.Product] = true
	}
	for product := range byProduct {
		jobs, err := f.followPass(ctx, product, only)
		if err != nil {
			return resp, err
		}
		resp.Jobs = append(resp.Jobs, jobs...)
	}
	return resp, nil
}

// Unfollow makes a site, or every site of a client, follow no channel,
// audited; the pending jobs following made that no agent has picked up
// are cancelled.
func (f *Fleet) Unfollow(ctx context.Context, site, client, actor string) (protocol.FollowResponse, error) {
	sites, target, err := f.followScope(ctx, site, client)
	if err != nil {
		return protocol.FollowResponse{}, err
	}
	names := siteNames(sites)
	f.follow.pass.Lock()
	defer f.follow.pass.Unlock()
	if err := f.Store.SetFollow(ctx, f.now(), names, "", "", store.Audit{Actor: actor, Action: "sites.unfollow", Object: target, Detail: "sites=" + strings.Join(names, ",")}); err != nil {
		return protocol.FollowResponse{}, err
	}
	for _, st := range sites {
		if err := f.cancelFollowJobs(ctx, st.Site, st.Product, reasonFollowCancel+": the site no longer follows a channel"); err != nil {
			return protocol.FollowResponse{}, err
		}
	}
	return protocol.FollowResponse{Sites: names, Jobs: []protocol.Job{}}, nil
}

// followScope reads the one site, or every site of the client.
func (f *Fleet) followScope(ctx context.Context, site, client string) ([]protocol.Site, string, error) {
	switch {
	case (site == "") == (client == ""):
		return nil, "", fault.New(fault.Invalid, "give exactly one of site or client")
	case site != "":
		st, err := f.Store.GetSite(ctx, site)
		if errors.Is(err, store.ErrNotFound) {
			return nil, "", fault.New(fault.NotFound, "site %s is not enrolled: see sites list", site)
		}
		return []protocol.Site{st}, "site " + site, err
	default:
		all, err := f.Store.ListSites(ctx, store.SiteFilter{Client: client})
		if err != nil {
			return nil, "", err
		}
		if len(all) == 0 {
			return nil, "", fault.New(fault.NotFound, "client %s has no enrolled sites: see sites list", client)
		}
		return all, "client " + client, nil
	}
}

func siteNames(sites []protocol.Site) []string {
	out := make([]string, len(sites))
	for i, st := range sites {
		out[i] = st.Site
	}
	return out
}

// followPass looks at the followers of product ("" for every product),
// only at the sites in only when it is not nil, and creates the jobs
// they need. It returns the jobs created.
func (f *Fleet) followPass(ctx context.Context, product string, only map[string]bool) ([]protocol.Job, error) {
	f.follow.pass.Lock()
	defer f.follow.pass.Unlock()
	var sites []protocol.Site
	if only == nil {
		all, err := f.Store.Followers(ctx, product)
		if err != nil {
			return nil, err
		}
		sites = all
	} else {
		for name := range only {
			st, err := f.Store.GetSite(ctx, name)
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return nil, err
			}
			if st.Channel != "" && (product == "" || st.Product == product) {
				sites = append(sites, st)
			}
		}
	}
	plan := f.NewPlanner()
	byChannel := map[string][]sitePlan{}
	var channels []string
	for _, st := range sites {
		jobs, err := f.followSite(ctx, plan, st)
		if err != nil {
			if _, ok := fault.As(err); ok {
				f.refused(st, err)
				continue
			}
			return nil, err
		}
		if len(jobs) > 0 {
			if byChannel[st.Channel] == nil {
				channels = append(channels, st.Channel)
			}
			byChannel[st.Channel] = append(byChannel[st.Channel], sitePlan{st, jobs})
		}
	}
	created := []protocol.Job{}
	for _, ch := range channels {
		jobs, err := f.createFollowJobs(ctx, ch, byChannel[ch])
		created = append(created, jobs...)
		if err != nil {
			return created, err
		}
	}
	return created, nil
}

// sitePlan is the jobs a follow pass plans for one site.
type sitePlan struct {
	st   protocol.Site
	jobs []store.NewJob
}

// refused logs why a follower was left as it is (drift, no path, a job
// picked up meanwhile): the other sites go on.
func (f *Fleet) refused(st protocol.Site, err error) {
	f.Log.Warn("follow: site not upgraded", "site", st.Site, "channel", st.Channel, "pin", st.Pin, "reason", err)
}

// createFollowJobs creates the planned jobs of a channel's followers in
// one transaction (one audit entry, made by follow:CHANNEL), so that a
// release reaching thousands of followers costs one commit; should one
// site refuse (its agent picked a job up meanwhile), each site's jobs are
// created on their own and the refused ones logged.
func (f *Fleet) createFollowJobs(ctx context.Context, channel string, plans []sitePlan) ([]protocol.Job, error) {
	creator := followCreator + channel
	jobsOf := func(ps []sitePlan) []store.NewJob {
		var all []store.NewJob
		for _, p := range ps {
			all = append(all, p.jobs...)
		}
		return all
	}
	audit := func(ps []sitePlan, jobs int) store.Audit {
		var sites []string
		for i, p := range ps {
			if i == 20 {
				sites = append(sites, fmt.Sprintf("and %d more", len(ps)-i))
				break
			}
			sites = append(sites, fmt.Sprintf("%s(pin %q)->%s", p.st.Site, p.st.Pin, p.jobs[len(p.jobs)-1].To))
		}
		object := "site " + ps[0].st.Site
		if len(ps) > 1 {
			object = fmt.Sprintf("%d sites", len(ps))
		}
		return store.Audit{Actor: creator, Action: "follow.upgrade", Object: object,
			Detail: fmt.Sprintf("channel=%s jobs=%d sites=%s", channel, jobs, strings.Join(sites, ","))}
	}
	all := jobsOf(plans)
	created, err := f.CreateJobs(ctx, all, audit(plans, len(all)))
	if _, ok := fault.As(err); !ok || len(plans) == 1 {
		if ok {
			f.refused(plans[0].st, err)
			err = nil
		}
		return created, err
	}
	created = []protocol.Job{}
	for _, p := range plans {
		jobs, err := f.CreateJobs(ctx, p.jobs, audit([]sitePlan{p}, len(p.jobs)))
		if _, ok := fault.As(err); ok {
			f.refused(p.st, err)
			continue
		}
		if err != nil {
			return created, err
		}
		created = append(created, jobs...)
	}
	return created, nil
}

// followSite decides what one follower needs (see the top of this file):
// it cancels what must not run and returns the jobs to create.
func (f *Fleet) followSite(ctx context.Context, plan *Planner, st protocol.Site) ([]store.NewJob, error) {
	all, err := plan.Releases(ctx, st.Product)
	if err != nil {
		return nil, err
	}
	_, pin, err := versions.ParsePin(st.Pin)
	if err != nil {
		return nil, fault.Wrap(fault.Invalid, err) // validated when set
	}
	want := Newest(all, st.Channel, pin)
	recent, err := f.Store.SiteJobs(ctx, st.Site, "", 20)
	if err != nil {
		return nil, err
	}
	yanked := map[string]bool{}
	for _, r := range all {
		if r.Yanked {
			yanked[r.Version] = true
		}
	}
	// The open jobs of the site's product, oldest first.
	var open []protocol.Job
	for i := len(recent) - 1; i >= 0; i-- {
		j := recent[i]
		if j.Product == st.Product && (j.Result == protocol.ResultPending || j.Result == protocol.ResultRunning) {
			open = append(open, j)
		}
	}
	for _, j := range open {
		if !strings.HasPrefix(j.CreatedBy, followCreator) || j.Result == protocol.ResultRunning {
			return nil, nil // support's or a rollout's job, or one running: it goes first
		}
	}
	installed := st.InstalledVersion
	for _, j := range recent {
		if j.Product != st.Product || j.EndedAt == nil {
			continue
		}
		// The site's newest ended job: when it succeeded after the last
		// check-in, the agent runs its version, though it has not said
		// so yet (its events come before its next check-in).
		if j.Result == protocol.ResultSucceeded && (st.LastSeen == nil || j.EndedAt.After(*st.LastSeen)) {
			installed = j.To
		}
		break
	}
	needed := want != nil && (installed == "" || versions.Compare(want.Version, installed) > 0)
	stale := false // open jobs lead elsewhere, or through a yanked release
	if len(open) > 0 {
		stale = want == nil || !versions.Equal(open[len(open)-1].To, want.Version)
		for _, j := range open {
			stale = stale || yanked[j.To]
		}
		if needed && !stale {
			return nil, nil // on its way
		}
	}
	if !needed {
		if len(open) > 0 {
			return nil, f.cancelFollowJobs(ctx, st.Site, st.Product, reasonFollowCancel+": the release it led to is yanked or no longer admitted by the site's channel and pin")
		}
		return nil, nil
	}
	for _, j := range recent {
		if versions.Equal(j.To, want.Version) && blocksRetry(j) {
			return nil, nil // tried, and it did not work: no loop
		}
	}
	st.InstalledVersion = installed
	jobs, err := plan.PlanSite(ctx, st, st.Product, want.Version, PlanOptions{CreatedBy: followCreator + st.Channel})
	if fe, ok := fault.As(err); ok && stale {
		// No way to the release any more (its path ran through one
		// since yanked): the old jobs must not run either.
		if cerr := f.cancelFollowJobs(ctx, st.Site, st.Product, reasonFollowCancel+": "+fe.Msg); cerr != nil {
			return nil, cerr
		}
	}
	return jobs, err
}

// blocksRetry reports whether an ended job means following must not try
// its version again: it failed or rolled back on the site (or was
// cancelled because a hop before it did), rather than being timed out,
// superseded or cancelled by following itself.
func blocksRetry(j protocol.Job) bool {
	switch j.Result {
	case protocol.ResultRolledBack:
		return true
	case protocol.ResultFailed:
		return j.Reason != reasonTimedOut && !strings.HasPrefix(j.Reason, "cancelled: superseded") && !strings.HasPrefix(j.Reason, reasonFollowCancel)
	}
	return false
}

// Newest returns the newest release on channel that is not yanked and
// that pin admits (nil when none is).
func Newest(releases []protocol.Release, channel string, pin goversion.Constraints) *protocol.Release {
	var best *protocol.Release
	for i := range releases {
		r := &releases[i]
		if r.Yanked || !onChannel(*r, channel) {
			continue
		}
		if pin != nil {
			v, err := versions.Parse(r.Version)
			if err != nil || !pin.Check(v) {
				continue
			}
		}
		if best == nil || versions.Compare(r.Version, best.Version) > 0 {
			best = r
		}
	}
	return best
}

func onChannel(r protocol.Release, channel string) bool {
	for _, c := range r.Channels {
		if c == channel {
			return true
		}
	}
	return false
}

// cancelFollowJobs ends the site's pending jobs of product that following
// made and no agent has picked up, with reason.
func (f *Fleet) cancelFollowJobs(ctx context.Context, site, product, reason string) error {
	return f.jobs(ctx, f.now(), func(r *jobRun) error {
		open, err := r.tx.OpenJobs(site)
		if err != nil {
			return err
		}
		// Newest first: a hop ends before the one it waits for, so that
		// each ends with this reason, not "the step before it ended".
		for i := len(open) - 1; i >= 0; i-- {
			j := open[i]
			if j.Product != product || j.Result != protocol.ResultPending || j.PickedUp || !strings.HasPrefix(j.CreatedBy, followCreator) {
				continue
			}
			if err := r.finish(j, protocol.ResultFailed, reason, false); err != nil {
				return err
			}
		}
		return nil
	})
}
