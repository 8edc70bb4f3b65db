package api

import (
	"net/http"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/store"
)

func (s *Server) listSites(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	sites, err := s.Store.ListSites(r.Context(), store.SiteFilter{Client: q.Get("client"), Product: q.Get("product")})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, sites)
}

func (s *Server) getSite(w http.ResponseWriter, r *http.Request) {
	st, err := s.Fleet.Site(r.Context(), r.PathValue("site"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) history(w http.ResponseWriter, r *http.Request) {
	jobs, err := s.Fleet.History(r.Context(), r.PathValue("site"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, jobs)
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
