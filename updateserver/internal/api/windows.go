package api

import (
	"net/http"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/maint"
)

// maint is the windows and freezes service over the server's store.
func (s *Server) maint() *maint.Service { return &maint.Service{Store: s.Store, Now: s.Now} }

// setWindow stores a site's or a client's window: PUT /windows.
func (s *Server) setWindow(w http.ResponseWriter, r *http.Request) {
	deadline(w, time.Minute)
	var req protocol.WindowRequest
	if err := decodeMax(w, r, &req, 64<<10); err != nil {
		s.fail(w, r, err)
		return
	}
	win, err := s.maint().SetWindow(r.Context(), req, caller(r).Actor())
	s.reply(w, r, win, err)
}

// clearWindow removes a window: DELETE /windows?site=S or ?client=C.
func (s *Server) clearWindow(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if err := s.maint().ClearWindow(r.Context(), q.Get("site"), q.Get("client"), caller(r).Actor()); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// siteWindow shows a site's window as of now: GET /sites/{site}/window.
func (s *Server) siteWindow(w http.ResponseWriter, r *http.Request) {
	sw, err := s.maint().SiteWindow(r.Context(), r.PathValue("site"))
	s.reply(w, r, sw, err)
}
