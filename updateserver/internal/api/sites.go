package api

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/fault"
	"github.com/dropless/dropless/updateserver/internal/fleet"
	"github.com/dropless/dropless/updateserver/internal/store"
)

func (s *Server) listSites(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	filter := store.SiteFilter{Client: q.Get("client"), Product: q.Get("product")}
	sites, err := s.Store.ListSites(r.Context(), filter)
	if err == nil {
		err = s.Fleet.Annotate(r.Context(), sites, filter)
	}
	if err == nil {
		err = s.maint().Annotate(r.Context(), sites)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, sites)
}

func (s *Server) getSite(w http.ResponseWriter, r *http.Request) {
	st, err := s.Fleet.Site(r.Context(), r.PathValue("site"))
	if err == nil {
		one := []protocol.Site{st}
		err = s.maint().Annotate(r.Context(), one)
		st = one[0]
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// history answers one page of a site's jobs (?limit=N, default 20, and
// ?before=JOB_ID for the page after that job), newest first, as a JSON
// array; a Link header (rel="next") points at the next page. The jobs are
// written one at a time, each with its events, so that a long history
// never sits in memory whole.
func (s *Server) history(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := fleet.DefaultHistoryLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			s.fail(w, r, fault.New(fault.Invalid, "limit=%q: give a number from 1 to %d", v, fleet.MaxHistoryLimit))
			return
		}
		limit = n
	}
	site := r.PathValue("site")
	page, err := s.Fleet.History(r.Context(), site, q.Get("before"), limit)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if page.Next != "" {
		next := url.Values{"before": {page.Next}, "limit": {strconv.Itoa(limit)}}
		w.Header().Set("Link", fmt.Sprintf("<%s/sites/%s/history?%s>; rel=\"next\"", protocol.APIVersion, url.PathEscape(site), next.Encode()))
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	io.WriteString(w, "[")
	for i, j := range page.Jobs {
		events, err := s.Fleet.JobEvents(r.Context(), j.ID)
		if err != nil {
			// The status is sent: leave the array unclosed, so that the
			// client sees a broken answer rather than a short page.
			s.Log.Error("history: reading a job's events failed", "site", site, "job", j.ID, "err", err)
			return
		}
		j.Events = events
		j.DowntimeMS = fleet.Downtime(j)
		b, err := json.MarshalIndent(j, "  ", "  ")
		if err != nil {
			s.Log.Error("history: encoding a job failed", "site", site, "job", j.ID, "err", err)
			return
		}
		if i > 0 {
			io.WriteString(w, ",")
		}
		io.WriteString(w, "\n  ")
		w.Write(b)
	}
	io.WriteString(w, "\n]\n")
}

func (s *Server) upgrade(w http.ResponseWriter, r *http.Request) {
	deadline(w, time.Minute)
	var req protocol.UpgradeRequest
	if err := decode(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	resp, err := s.Fleet.Upgrade(r.Context(), req, caller(r).Actor())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, resp)
}
