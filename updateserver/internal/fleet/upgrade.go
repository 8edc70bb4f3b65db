package fleet

import (
	"time"

	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/pkg/versions"
	"github.com/dropless/dropless/updateserver/internal/fault"
	"github.com/dropless/dropless/updateserver/internal/store"
)

func newJobID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return "job-" + hex.EncodeToString(b)
}

// AgentProduct is the agent itself, a product every site runs beside its
// own: its installed version is the agent_version of the check-ins.
const AgentProduct = "updateagent"

// Upgrade assigns version to a site or to every site of a client: one job
// per hop and site, of the sites' own product or, with product
// AgentProduct, of their agents. Sites already on that version are
// skipped (listed in Done); sites with jobs that are offline are listed
// in Offline: their jobs wait until they check in.
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
	if req.Reason != "" && !req.Now {
		return protocol.UpgradeResponse{}, fault.New(fault.Invalid, "a reason explains --now (overriding the window and freezes): give --now too, or leave the reason out")
	}
	if _, err := versions.Parse(req.To); err != nil {
		return protocol.UpgradeResponse{}, fault.Wrap(fault.Invalid, err)
	}
	resp := protocol.UpgradeResponse{Jobs: []protocol.Job{}}
	var jobs []store.NewJob
	plan := f.NewPlanner()
	opts := PlanOptions{Now: req.Now, AcceptDrift: req.AcceptDrift, AllowDowngrade: req.AllowDowngrade, AllowIrreversible: req.AllowIrreversible, Force: req.Force, CreatedBy: actor}
	offline := map[string]bool{}
	for _, st := range sites {
		product := req.Product
		if product == "" {
			product = st.Product
		}
		if product != st.Product && product != AgentProduct {
			return protocol.UpgradeResponse{}, fault.New(fault.Invalid, "site %s runs %s, not %s: upgrade it with product %s, or %s for its agent",
				st.Site, st.Product, product, st.Product, AgentProduct)
		}
		hops, err := plan.PlanSite(ctx, st, product, req.To, opts)
		if err != nil {
			if fe, ok := fault.As(err); ok && len(sites) > 1 {
				fe.Msg = "site " + st.Site + ": " + fe.Msg
			}
			return protocol.UpgradeResponse{}, err
		}
		if len(hops) == 0 {
			resp.Done = append(resp.Done, st.Site)
			continue
		}
		if !f.Online(st) && !offline[st.Site] {
			offline[st.Site] = true
			resp.Offline = append(resp.Offline, st.Site)
		}
		jobs = append(jobs, hops...)
	}
	if len(jobs) == 0 {
		return resp, nil
	}
	target := "site " + req.Site
	if req.Client != "" {
		target = "client " + req.Client
	}
	detail := fmt.Sprintf("to=%s now=%t accept_drift=%t allow_downgrade=%t allow_irreversible=%t force=%t jobs=%d", req.To, req.Now, req.AcceptDrift, req.AllowDowngrade, req.AllowIrreversible, req.Force, len(jobs))
	if req.Product != "" {
		detail = "product=" + req.Product + " " + detail
	}
	detail += nowReason(req)
	created, err := f.CreateJobs(ctx, jobs, store.Audit{Actor: actor, Action: "upgrade", Object: target, Detail: detail})
	if err != nil {
		return protocol.UpgradeResponse{}, err
	}
	resp.Jobs = created
	return resp, nil
}

// Online reports whether the site checked in within three poll
// intervals.
func (f *Fleet) Online(st protocol.Site) bool {
	return st.LastSeen != nil && !st.LastSeen.Before(f.OnlineSince())
}

// OnlineSince is when a site must have last checked in, at the latest, to
// count as online: three poll intervals ago. Everything that says online
// (sites list, the dashboard, the metrics) asks here.
func (f *Fleet) OnlineSince() time.Time { return f.now().Add(-3 * f.PollInterval) }

// PlanOptions is what support confirmed for an upgrade; each planned job
// carries it.
type PlanOptions struct {
	Now, AcceptDrift, AllowDowngrade, AllowIrreversible bool
	// Force allows a yanked target (never a yanked hop on the way).
	Force bool
	// CreatedBy is who asked: a token's actor, or later a rollout.
	CreatedBy string
}

// Planner plans the upgrades of sites against one read of each product's
// releases: an upgrade of a client, a rollout's wave or a channel's
// followers plan many sites at once. A Planner is used by one goroutine
// for one decision, then dropped (it does not see releases published
// after its first read of a product).
type Planner struct {
	store    *store.Store
	releases map[string][]protocol.Release
	// paths are the paths planned, by product, installed version, target
	// and downgrade: a client's thousands of sites run a few versions,
	// and planning parses every release's version again.
	paths map[pathKey][]protocol.Release
}

type pathKey struct {
	product, installed, to string
	downgrade, force       bool
}

// NewPlanner returns a planner reading this fleet's releases.
func (f *Fleet) NewPlanner() *Planner {
	return &Planner{store: f.Store, releases: map[string][]protocol.Release{}, paths: map[pathKey][]protocol.Release{}}
}

// PlanSite returns the jobs that take a site's product (product is
// st.Product) or its agent (product is AgentProduct) to version to: one
// job per hop, in order, to be created together with CreateJobs; none
// when the site runs that version already. It refuses, with a fault
// error that says what to do: a version not published, a site whose
// files were changed by hand (unless opts.AcceptDrift), a downgrade
// (unless opts.AllowDowngrade), no upgrade path.
func (p *Planner) PlanSite(ctx context.Context, st protocol.Site, product, to string, opts PlanOptions) ([]store.NewJob, error) {
	installed := st.InstalledVersion
	if product == AgentProduct {
		installed = st.AgentVersion
	}
	key := pathKey{product, installed, to, opts.AllowDowngrade, opts.Force}
	path, planned := p.paths[key]
	if planned && (product == AgentProduct || len(protocol.BlockingDrift(st.Drift)) == 0 || opts.AcceptDrift) {
		return p.jobs(st, product, installed, path, opts), nil // the checks below passed for this key
	}
	all, err := p.Releases(ctx, product)
	if err != nil {
		return nil, err
	}
	var target protocol.Release
	for _, r := range all {
		if versions.Equal(r.Version, to) {
			target = r
		}
	}
	if target.Version == "" {
		return nil, fault.New(fault.NotFound, "%s %s is not published: see release list --product %s", product, to, product)
	}
	if target.Yanked && !opts.Force {
		return nil, fault.New(fault.Conflict, "%s %s is yanked (%s): it is never offered again; upgrade with --force to install it anyway",
			product, target.Version, orNone(target.YankReason))
	}
	if product == AgentProduct {
		if _, err := versions.Parse(installed); installed != "" && err != nil {
			return nil, fault.New(fault.Conflict, "site %s reports agent version %q, which is not a release of %s: install a released agent on it by hand first",
				st.Site, installed, AgentProduct)
		}
	} else if d := protocol.BlockingDrift(st.Drift); len(d) > 0 && !opts.AcceptDrift {
		// Drift the agent only reports (schema_drift = "report") does not block.
		return nil, fault.New(fault.Conflict, "site %s has drifted (%d changes by hand, e.g. %s): look at sites show %s, then upgrade with --accept-drift to overwrite them",
			st.Site, len(d), d[0], st.Site)
	}
	path, err = PlanPath(all, installed, target, opts.AllowDowngrade)
	if err != nil {
		return nil, err
	}
	p.paths[key] = path
	return p.jobs(st, product, installed, path, opts), nil
}

// jobs is the jobs of site st's product along path, from installed.
func (p *Planner) jobs(st protocol.Site, product, installed string, path []protocol.Release, opts PlanOptions) []store.NewJob {
	var jobs []store.NewJob
	from := installed
	for _, hop := range path {
		jobs = append(jobs, store.NewJob{ID: newJobID(), Site: st.Site, Product: product, From: from, To: hop.Version, Target: hop.Target,
			Now: opts.Now, AcceptDrift: opts.AcceptDrift, AllowDowngrade: opts.AllowDowngrade, AllowIrreversible: opts.AllowIrreversible, CreatedBy: opts.CreatedBy})
		from = hop.Version
	}
	return jobs
}

// Releases returns product's releases, newest first, as the planner
// read them first.
func (p *Planner) Releases(ctx context.Context, product string) ([]protocol.Release, error) {
	all, ok := p.releases[product]
	if !ok {
		var err error
		if all, err = p.store.ListReleases(ctx, store.ReleaseFilter{Product: product}); err != nil {
			return nil, err
		}
		p.releases[product] = all
	}
	return all, nil
}

// nowReason is the audit detail of --now's reason.
func nowReason(req protocol.UpgradeRequest) string {
	if !req.Now {
		return ""
	}
	return " reason=" + strconv.Quote(protocol.CleanText(req.Reason, 500, false))
}

func orNone(s string) string {
	if s == "" {
		return "no reason given"
	}
	return s
}
