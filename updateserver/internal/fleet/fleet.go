// Package fleet is support's side of the server and the agents' partner:
// enrollment, check-ins (long-polled, so an upgrade reaches a connected
// agent at once), job events, assignments of versions to sites, and the
// sweeper that ends jobs without progress.
package fleet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/pkg/versions"
	"github.com/dropless/dropless/updateserver/internal/fault"
	"github.com/dropless/dropless/updateserver/internal/maint"
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

	hub hub
}

func (f *Fleet) now() time.Time {
	if f.Now != nil {
		return f.Now()
	}
	return time.Now()
}

var nameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

func validName(kind, v string) error {
	if !nameRe.MatchString(v) {
		return fault.New(fault.Invalid, "%s %q is not valid: use lower-case letters, digits, '.', '_' and '-' (at most 64)", kind, v)
	}
	return nil
}

// Enroll-token and credential prefixes.
const EnrollTokenPrefix = "dle_"

// CreateEnrollToken makes a token with which agents of client enroll. With
// Site it enrolls that site name only; with Replace too it may enroll that
// site again when it is already enrolled for the client (a new machine, a
// lost credential). Site names are global: one name, one site.
func (f *Fleet) CreateEnrollToken(ctx context.Context, req protocol.CreateEnrollTokenRequest, actor string) (protocol.CreateEnrollTokenResponse, error) {
	if err := validName("client", req.Client); err != nil {
		return protocol.CreateEnrollTokenResponse{}, err
	}
	if req.Site != "" {
		if err := validName("site", req.Site); err != nil {
			return protocol.CreateEnrollTokenResponse{}, err
		}
	} else if req.Replace {
		return protocol.CreateEnrollTokenResponse{}, fault.New(fault.Invalid, "replace needs a site: a token that may enroll an existing site again is made for that one site (--site SITE --replace)")
	}
	ttl := 24 * time.Hour
	if req.ExpiresIn != "" {
		d, err := time.ParseDuration(req.ExpiresIn)
		if err != nil || d <= 0 {
			return protocol.CreateEnrollTokenResponse{}, fault.New(fault.Invalid, "expires %q is not a positive duration (write it like 24h or 30m)", req.ExpiresIn)
		}
		ttl = d
	}
	uses := req.Uses
	if uses == 0 {
		uses = 1
	}
	if uses < 0 || uses > 100000 {
		return protocol.CreateEnrollTokenResponse{}, fault.New(fault.Invalid, "uses %d: give a number from 1 to 100000", uses)
	}
	now := f.now()
	secret := store.NewSecret(EnrollTokenPrefix)
	exp := now.Add(ttl).UTC()
	id, err := f.Store.CreateEnrollToken(ctx, now, store.NewEnrollToken{Secret: secret, Client: req.Client, Site: req.Site, Replace: req.Replace,
		ExpiresAt: exp, Uses: uses, By: actor})
	if err != nil {
		return protocol.CreateEnrollTokenResponse{}, err
	}
	return protocol.CreateEnrollTokenResponse{ID: id, Token: secret, Client: req.Client, Site: req.Site, Replace: req.Replace, ExpiresAt: exp, Uses: uses}, nil
}

// Enroll exchanges an enroll token for the site's own credential. A
// refusal of an enrolled site reads the same whoever owns it: it names
// neither the site's client nor its product.
func (f *Fleet) Enroll(ctx context.Context, req protocol.EnrollRequest) (protocol.EnrollResponse, error) {
	for kind, v := range map[string]string{"site": req.Site, "client": req.Client, "product": req.Product} {
		if err := validName(kind, v); err != nil {
			return protocol.EnrollResponse{}, err
		}
	}
	cred := store.NewSecret(protocol.AgentCredentialPrefix)
	replaced, err := f.Store.Enroll(ctx, f.now(), req.Token, req, cred)
	var ref *store.EnrollRefusal
	errors.As(err, &ref)
	unauthorized := func(msg string) error { return &fault.Error{Kind: fault.Unauthorized, Msg: msg, Err: err} }
	switch {
	case errors.Is(err, store.ErrEnrollTokenInvalid), errors.Is(err, store.ErrEnrollTokenExpired),
		errors.Is(err, store.ErrEnrollTokenUsed), errors.Is(err, store.ErrEnrollTokenRevoked):
		return protocol.EnrollResponse{}, unauthorized(err.Error() + ": ask support for a new one (updateserver enroll-token create)")
	case errors.Is(err, store.ErrWrongClient):
		return protocol.EnrollResponse{}, unauthorized(fmt.Sprintf("the enroll token is for another client (%s, not %s): set client in the agent config, or ask support for a token for %s",
			ref.TokenClient, req.Client, req.Client))
	case errors.Is(err, store.ErrWrongSite):
		return protocol.EnrollResponse{}, unauthorized(fmt.Sprintf("the enroll token is for site %s only, not %s: set site = %q in the agent config, or ask support for a token for %s",
			ref.TokenSite, req.Site, ref.TokenSite, req.Site))
	case errors.Is(err, store.ErrSiteEnrolled):
		// Word for word the same for every caller: nothing in it depends
		// on the token, the request's client or the site's owner.
		return protocol.EnrollResponse{}, &fault.Error{Kind: fault.Conflict, Err: err, Msg: fmt.Sprintf(
			"site %s is already enrolled: to enroll it again (a new machine or a lost credential), ask support for a token made with enroll-token create --client <your client> --site %s --replace",
			req.Site, req.Site)}
	case errors.Is(err, store.ErrWrongProduct):
		return protocol.EnrollResponse{}, &fault.Error{Kind: fault.Conflict, Err: err, Msg: fmt.Sprintf(
			"site %s runs product %s, not %s: set product = %q in the agent config, or enroll this machine under another site name",
			req.Site, ref.SiteProduct, req.Product, ref.SiteProduct)}
	case err != nil:
		return protocol.EnrollResponse{}, err
	}
	if replaced {
		f.Log.Info("site enrolled again; its old credential no longer works", "site", req.Site, "client", req.Client, "product", req.Product, "hostname", req.Hostname)
	} else {
		f.Log.Info("site enrolled", "site", req.Site, "client", req.Client, "product", req.Product, "hostname", req.Hostname)
	}
	return protocol.EnrollResponse{Site: req.Site, Credential: cred}, nil
}

func newJobID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return "job-" + hex.EncodeToString(b)
}

// Upgrade assigns version to a site or to every site of a client: one job
// each. Sites already on that version are skipped.
func (f *Fleet) Upgrade(ctx context.Context, req protocol.UpgradeRequest, actor string) (protocol.UpgradeResponse, error) {
	var sites []protocol.Site
	switch {
	case (req.Site == "") == (req.Client == ""):
		return protocol.UpgradeResponse{}, fault.New(fault.Invalid, "give exactly one of site or client")
	case req.Site != "":
		st, err := f.Store.GetSite(ctx, req.Site)
		if errors.Is(err, store.ErrNotFound) {
			return protocol.UpgradeResponse{}, fault.New(fault.NotFound, "site %s is not enrolled: see sites list", req.Site)
		}
		if err != nil {
			return protocol.UpgradeResponse{}, err
		}
		sites = []protocol.Site{st}
	default:
		all, err := f.Store.ListSites(ctx, store.SiteFilter{Client: req.Client})
		if err != nil {
			return protocol.UpgradeResponse{}, err
		}
		if len(all) == 0 {
			return protocol.UpgradeResponse{}, fault.New(fault.NotFound, "client %s has no enrolled sites: see sites list", req.Client)
		}
		sites = all
	}
	if req.Reason != "" && !req.Now { // Windows
		return protocol.UpgradeResponse{}, fault.New(fault.Invalid, "a reason explains --now (overriding the window and freezes): give --now too, or leave the reason out")
	}
	if _, err := versions.Parse(req.To); err != nil {
		return protocol.UpgradeResponse{}, fault.Wrap(fault.Invalid, err)
	}
	var jobs []store.NewJob
	var out []protocol.Job
	now := f.now()
	type catalogue struct {
		target protocol.Release
		all    []protocol.Release
	}
	products := map[string]*catalogue{}
	for _, st := range sites {
		cat, ok := products[st.Product]
		if !ok {
			all, err := f.Store.ListReleases(ctx, store.ReleaseFilter{Product: st.Product})
			if err != nil {
				return protocol.UpgradeResponse{}, err
			}
			cat = &catalogue{all: all}
			for _, r := range all {
				if versions.Equal(r.Version, req.To) {
					cat.target = r
				}
			}
			if cat.target.Version == "" {
				return protocol.UpgradeResponse{}, fault.New(fault.NotFound, "%s %s is not published: see release list --product %s", st.Product, req.To, st.Product)
			}
			products[st.Product] = cat
		}
		if len(st.Drift) > 0 && !req.AcceptDrift {
			return protocol.UpgradeResponse{}, fault.New(fault.Conflict, "site %s has drifted (%d changes by hand, e.g. %s): look at sites show %s, then upgrade with --accept-drift to overwrite them",
				st.Site, len(st.Drift), st.Drift[0], st.Site)
		}
		path, err := PlanPath(cat.all, st.InstalledVersion, cat.target, req.AllowDowngrade)
		if err != nil {
			if fe, ok := fault.As(err); ok && len(sites) > 1 {
				fe.Msg = "site " + st.Site + ": " + fe.Msg
			}
			return protocol.UpgradeResponse{}, err
		}
		from := st.InstalledVersion
		for _, hop := range path {
			j := store.NewJob{ID: newJobID(), Site: st.Site, Product: st.Product, From: from, To: hop.Version, Target: hop.Target,
				Now: req.Now, AcceptDrift: req.AcceptDrift, AllowDowngrade: req.AllowDowngrade, AllowIrreversible: req.AllowIrreversible, CreatedBy: actor}
			jobs = append(jobs, j)
			out = append(out, protocol.Job{ID: j.ID, Site: j.Site, Product: j.Product, From: j.From, To: j.To, Result: protocol.ResultPending, CreatedAt: now, CreatedBy: actor, Events: []protocol.Event{}})
			from = hop.Version
		}
	}
	if len(jobs) == 0 {
		return protocol.UpgradeResponse{Jobs: []protocol.Job{}}, nil
	}
	target := "site " + req.Site
	if req.Client != "" {
		target = "client " + req.Client
	}
	err := f.Store.CreateJobs(ctx, now, jobs, store.Audit{Actor: actor, Action: "upgrade", Object: target,
		Detail: fmt.Sprintf("to=%s now=%t accept_drift=%t allow_downgrade=%t allow_irreversible=%t jobs=%d", req.To, req.Now, req.AcceptDrift, req.AllowDowngrade, req.AllowIrreversible, len(jobs)) + nowReason(req)})
	if errors.Is(err, store.ErrConflict) {
		return protocol.UpgradeResponse{}, fault.Wrap(fault.Conflict, err)
	}
	if err != nil {
		return protocol.UpgradeResponse{}, err
	}
	// Wake each site's long-poll with its first hop.
	woken := map[string]bool{}
	for _, j := range jobs {
		if woken[j.Site] {
			continue
		}
		woken[j.Site] = true
		f.hub.notify(j.Site, &protocol.Assignment{JobID: j.ID, Product: j.Product, Version: j.To, Target: j.Target, From: j.From,
			AcceptDrift: j.AcceptDrift, AllowDowngrade: j.AllowDowngrade, AllowIrreversible: j.AllowIrreversible})
	}
	return protocol.UpgradeResponse{Jobs: out}, nil
}

// Checkin records an agent's report and answers with its assignment. With
// wait > 0 it holds the call until the site has an assignment the agent
// does not know yet, or wait runs out.
//
// A job's result is what the agent reports about that job, by its ID:
// nothing is inferred from the installed version. A job handed out in
// the answer is recorded as picked up before the answer leaves, so that
// an upgrade made meanwhile cannot supersede it.
func (f *Fleet) Checkin(ctx context.Context, site string, req protocol.CheckinRequest, wait time.Duration) (protocol.CheckinResponse, error) {
	if err := validateCheckin(&req); err != nil {
		return protocol.CheckinResponse{}, err
	}
	now := f.now()
	if err := f.Store.Checkin(ctx, now, site, req); err != nil {
		return protocol.CheckinResponse{}, err
	}
	known := ""
	if j := req.Job; j != nil {
		known = j.ID
		switch j.Result {
		case protocol.ResultSucceeded, protocol.ResultRolledBack, protocol.ResultFailed:
			if err := f.Store.CompleteJob(ctx, now, site, j.ID, j.Result, ""); err != nil {
				return protocol.CheckinResponse{}, err
			}
		default:
			// The agent works on this job: it has picked it up.
			if open, err := f.Store.OpenJob(ctx, site); err == nil && open.Job.ID == j.ID && !open.HandedOut {
				if _, err := f.Store.HandOut(ctx, now, site, j.ID); err != nil {
					return protocol.CheckinResponse{}, err
				}
			}
		}
	}
	deadline := time.Now().Add(wait)
	for {
		// Subscribe before reading, so a job created in between wakes us.
		ch := f.hub.subscribe(site)
		resp, handedOut, err := f.assignment(ctx, site)
		if err != nil {
			f.hub.unsubscribe(site, ch)
			return resp, err
		}
		// Windows: a job is handed out only while it may start.
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
		if n := resp.Window.NextOpen; !resp.Window.Open && n != nil { // Windows: wake at the opening
			remaining = min(remaining, max(n.Sub(f.now()), 10*time.Millisecond))
		}
		t := time.NewTimer(remaining)
		var woke *protocol.Assignment
		select {
		case woke = <-ch:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
		f.hub.unsubscribe(site, ch)
		if ctx.Err() != nil {
			return resp, nil
		}
		if woke != nil && woke.JobID != known {
			// The new job, straight from the transaction that created it:
			// a thousand woken agents cost no job reads.
			ws, err := maint.Checkin(ctx, f.Store, f.now(), site, woke.JobID) // Windows: may it start now?
			if err != nil {
				return resp, err
			}
			if ws.Open {
				ok, err := f.handOut(ctx, site, woke.JobID, false)
				if err != nil {
					return resp, err
				}
				if ok {
					resp.Assignment, resp.Window = woke, ws
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
	return f.Store.HandOut(ctx, f.now(), site, id)
}

func (f *Fleet) assignment(ctx context.Context, site string) (protocol.CheckinResponse, bool, error) {
	resp := protocol.CheckinResponse{PollSeconds: int(f.PollInterval / time.Second), Window: protocol.WindowStatus{Open: true}}
	open, err := f.Store.OpenJob(ctx, site)
	if errors.Is(err, store.ErrNotFound) {
		resp.Window, err = maint.Checkin(ctx, f.Store, f.now(), site, "") // Windows
		return resp, false, err
	}
	if err != nil {
		return resp, false, err
	}
	resp.Assignment = &open.Assignment
	if !open.HandedOut { // Windows: a job picked up runs to its end
		if resp.Window, err = maint.Checkin(ctx, f.Store, f.now(), site, open.Job.ID); err != nil {
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
	if v := req.InstalledVersion; v != "" {
		if _, err := versions.Parse(v); err != nil {
			return fault.New(fault.Invalid, "check-in installed_version: %q is not a version", v)
		}
	}
	if req.State == "" {
		req.State = protocol.StateIdle
	}
	req.Drift = protocol.CleanDrift(req.Drift)
	return nil
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
	n, err := f.Store.AddEvents(ctx, f.now(), site, events)
	if errors.Is(err, store.ErrNotFound) {
		return protocol.EventsResponse{}, &fault.Error{Kind: fault.Forbidden, Msg: err.Error(), Err: err}
	}
	if err != nil {
		return protocol.EventsResponse{}, err
	}
	return protocol.EventsResponse{Accepted: n, Duplicate: len(events) - n}, nil
}

// MaxEventBatch bounds the events of one request.
const MaxEventBatch = 500

// SweepStaleJobs fails jobs without progress for JobTimeout.
func (f *Fleet) SweepStaleJobs(ctx context.Context) error {
	now := f.now()
	ids, err := f.Store.FailStaleJobs(ctx, now, now.Add(-f.JobTimeout))
	for _, id := range ids {
		f.Log.Warn("job timed out", "job", id, "after", f.JobTimeout)
	}
	return err
}

// RunSweeper sweeps every interval until ctx ends.
func (f *Fleet) RunSweeper(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := f.SweepStaleJobs(ctx); err != nil && ctx.Err() == nil {
			f.Log.Error("sweeping stale jobs failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

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

// hub wakes long-polling check-ins when their site gets a job, handing
// them the new assignment.
type hub struct {
	mu   sync.Mutex
	subs map[string]map[chan *protocol.Assignment]struct{}
}

func (h *hub) subscribe(site string) chan *protocol.Assignment {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.subs == nil {
		h.subs = map[string]map[chan *protocol.Assignment]struct{}{}
	}
	ch := make(chan *protocol.Assignment, 1)
	if h.subs[site] == nil {
		h.subs[site] = map[chan *protocol.Assignment]struct{}{}
	}
	h.subs[site][ch] = struct{}{}
	return ch
}

func (h *hub) unsubscribe(site string, ch chan *protocol.Assignment) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.subs[site], ch)
	if len(h.subs[site]) == 0 {
		delete(h.subs, site)
	}
}

func (h *hub) notify(site string, a *protocol.Assignment) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs[site] {
		select {
		case ch <- a:
		default:
		}
	}
}

// nowReason is the audit detail of --now's reason (Windows).
func nowReason(req protocol.UpgradeRequest) string {
	if !req.Now {
		return ""
	}
	return " reason=" + strconv.Quote(protocol.CleanText(req.Reason, 500, false))
}
