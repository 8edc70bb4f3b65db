package ui

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/fleet"
	"github.com/dropless/dropless/updateserver/internal/store"
)

// PageSize is how many sites a page of the fleet view lists.
const PageSize = 50

// maxFilter bounds a filter's value: longer than any name.
const maxFilter = 256

type fleetData struct {
	Filter       store.SitePageQuery
	Facets       store.SiteFacets
	Distribution []productVersions
	Sites        []store.SiteRow
	Total        int
	Page, Pages  int
	Prev, Next   string // links to the pages around this one; "" at the ends
}

// productVersions is a product's version distribution.
type productVersions struct {
	Product  string
	Total    int
	Versions []store.VersionCount
}

func (s *Server) fleetView(w http.ResponseWriter, r *http.Request, p page, _ string) {
	q := r.URL.Query()
	f := store.SitePageQuery{Limit: PageSize}
	for _, v := range []struct {
		dst  *string
		name string
	}{{&f.Client, "client"}, {&f.Product, "product"}, {&f.Version, "version"}, {&f.State, "state"}, {&f.Seen, "seen"}} {
		*v.dst = strings.TrimSpace(q.Get(v.name))
		if len(*v.dst) > maxFilter {
			s.errorPage(w, r, http.StatusBadRequest, "The filter "+v.name+" is too long.")
			return
		}
	}
	if f.Seen != "" && f.Seen != "online" && f.Seen != "offline" {
		f.Seen = ""
	}
	pageNo := 1
	if v := q.Get("page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1_000_000 {
			s.errorPage(w, r, http.StatusBadRequest, "page must be a whole number from 1.")
			return
		}
		pageNo = n
	}
	f.Offset = (pageNo - 1) * PageSize
	f.OnlineSince = s.Fleet.OnlineSince()

	ctx := r.Context()
	res, err := s.Store.SitesPage(ctx, f)
	var facets store.SiteFacets
	var dist []store.VersionCount
	if err == nil {
		facets, err = s.Store.Facets(ctx)
	}
	if err == nil {
		dist, err = s.Store.VersionDistribution(ctx, f.Client)
	}
	if err == nil {
		// The same window annotation as the API's sites list, for the
		// sites of this page only.
		sites := make([]protocol.Site, len(res.Sites))
		for i := range res.Sites {
			sites[i] = res.Sites[i].Site
		}
		err = s.maint().Annotate(ctx, sites)
		for i := range sites {
			res.Sites[i].Site = sites[i]
		}
	}
	if err != nil {
		status, msg := s.userError(r, err)
		s.errorPage(w, r, status, msg)
		return
	}
	d := fleetData{Filter: f, Facets: facets, Sites: res.Sites, Total: res.Total, Page: pageNo,
		Pages: max(1, (res.Total+PageSize-1)/PageSize)}
	for _, v := range dist {
		if n := len(d.Distribution); n == 0 || d.Distribution[n-1].Product != v.Product {
			d.Distribution = append(d.Distribution, productVersions{Product: v.Product})
		}
		pv := &d.Distribution[len(d.Distribution)-1]
		pv.Versions = append(pv.Versions, v)
		pv.Total += v.Sites
	}
	link := func(n int) string {
		v := url.Values{}
		for k, val := range map[string]string{"client": f.Client, "product": f.Product, "version": f.Version, "state": f.State, "seen": f.Seen} {
			if val != "" {
				v.Set(k, val)
			}
		}
		v.Set("page", strconv.Itoa(n))
		return Prefix + "?" + v.Encode()
	}
	if pageNo > 1 {
		d.Prev = link(pageNo - 1)
	}
	if pageNo < d.Pages {
		d.Next = link(pageNo + 1)
	}
	p.Title, p.Nav, p.Data = "Fleet", "fleet", d
	s.render(w, http.StatusOK, "fleet.html", p)
}

// historyPage is how many jobs a site's page shows at a time.
const historyPage = 10

type siteData struct {
	Site     protocol.Site
	Online   bool
	Jobs     []protocol.Job
	Next     string // the link to older jobs; "" when none
	Releases []protocol.Release
}

func (s *Server) siteView(w http.ResponseWriter, r *http.Request, p page, _ string) {
	ctx := r.Context()
	name := r.PathValue("site")
	st, err := s.Fleet.Site(ctx, name)
	if err == nil {
		one := []protocol.Site{st}
		err = s.maint().Annotate(ctx, one)
		st = one[0]
	}
	var hist fleet.HistoryPage
	if err == nil {
		hist, err = s.Fleet.History(ctx, name, r.URL.Query().Get("before"), historyPage)
	}
	for i := 0; err == nil && i < len(hist.Jobs); i++ {
		hist.Jobs[i].Events, err = s.Fleet.JobEvents(ctx, hist.Jobs[i].ID)
	}
	d := siteData{Site: st, Jobs: hist.Jobs}
	if err == nil && p.Can.Upgrade {
		d.Releases, err = s.Store.ListReleases(ctx, store.ReleaseFilter{Product: st.Product})
	}
	if err != nil {
		status, msg := s.userError(r, err)
		s.errorPage(w, r, status, msg)
		return
	}
	d.Online = s.Fleet.Online(st)
	if hist.Next != "" {
		d.Next = Prefix + "sites/" + url.PathEscape(name) + "?" + url.Values{"before": {hist.Next}}.Encode()
	}
	p.Title, p.Nav, p.Data = "Site "+st.Site, "fleet", d
	s.render(w, http.StatusOK, "site.html", p)
}

// upgrade is the site page's upgrade form: the same Fleet.Upgrade as
// POST /api/v1/upgrades, audited with the token's name.
func (s *Server) upgrade(w http.ResponseWriter, r *http.Request, p page, sid string) {
	name := r.PathValue("site")
	back := Prefix + "sites/" + url.PathEscape(name)
	req := protocol.UpgradeRequest{
		Site:        name,
		To:          strings.TrimSpace(r.PostFormValue("to")),
		Now:         r.PostFormValue("now") != "",
		Reason:      strings.TrimSpace(r.PostFormValue("reason")),
		AcceptDrift: r.PostFormValue("accept_drift") != "",
		Force:       r.PostFormValue("force") != "",
	}
	resp, err := s.Fleet.Upgrade(r.Context(), req, p.Token.Actor())
	if err != nil {
		s.failed(w, r, sid, back, err)
		return
	}
	if len(resp.Jobs) == 0 && len(resp.Done) > 0 {
		s.done(w, r, sid, back, "The site already runs "+req.To+": nothing to do.", false)
		return
	}
	msg := "Upgrade to " + req.To + " assigned"
	if n := len(resp.Jobs); n > 1 {
		msg += " (" + strconv.Itoa(n) + " jobs, one per hop)"
	}
	if req.Now {
		msg += ", now"
	} else {
		msg += ": it starts inside the site's window"
	}
	s.done(w, r, sid, back, msg+".", false)
}
