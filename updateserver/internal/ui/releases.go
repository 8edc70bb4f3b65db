package ui

import (
	"net/http"
	"strings"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/store"
)

type releasesData struct {
	Product, Channel string
	Releases         []protocol.Release
}

func (s *Server) releasesView(w http.ResponseWriter, r *http.Request, p page, _ string) {
	q := r.URL.Query()
	d := releasesData{Product: strings.TrimSpace(q.Get("product")), Channel: strings.TrimSpace(q.Get("channel"))}
	if len(d.Product) > maxFilter || len(d.Channel) > maxFilter {
		s.errorPage(w, r, http.StatusBadRequest, "A filter is too long.")
		return
	}
	rs, err := s.Store.ListReleases(r.Context(), store.ReleaseFilter{Product: d.Product, Channel: d.Channel})
	if err != nil {
		status, msg := s.userError(r, err)
		s.errorPage(w, r, status, msg)
		return
	}
	d.Releases = rs
	p.Title, p.Nav, p.Data = "Releases", "releases", d
	s.render(w, http.StatusOK, "releases.html", p)
}

// promote and yank are the releases page's forms: the same Publisher
// calls as the API's promote and yank, audited with the token's name.
func (s *Server) promote(w http.ResponseWriter, r *http.Request, p page, sid string) {
	product, version := r.PathValue("product"), r.PathValue("version")
	channel := strings.TrimSpace(r.PostFormValue("channel"))
	if _, err := s.Publisher.Promote(r.Context(), product, version, channel, p.Token.Actor()); err != nil {
		s.failed(w, r, sid, Prefix+"releases", err)
		return
	}
	s.done(w, r, sid, Prefix+"releases", product+" "+version+" is on channel "+channel+".", false)
}

func (s *Server) yank(w http.ResponseWriter, r *http.Request, p page, sid string) {
	product, version := r.PathValue("product"), r.PathValue("version")
	reason := strings.TrimSpace(r.PostFormValue("reason"))
	if _, err := s.Publisher.Yank(r.Context(), product, version, reason, p.Token.Actor()); err != nil {
		s.failed(w, r, sid, Prefix+"releases", err)
		return
	}
	s.done(w, r, sid, Prefix+"releases", product+" "+version+" is yanked.", false)
}
