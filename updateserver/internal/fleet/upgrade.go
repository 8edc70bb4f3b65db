package fleet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"

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
		Detail: fmt.Sprintf("to=%s now=%t accept_drift=%t allow_downgrade=%t allow_irreversible=%t jobs=%d", req.To, req.Now, req.AcceptDrift, req.AllowDowngrade, req.AllowIrreversible, len(jobs))})
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
