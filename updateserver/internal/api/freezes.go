package api

import (
	"net/http"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
)

// createFreeze: POST /freezes.
func (s *Server) createFreeze(w http.ResponseWriter, r *http.Request) {
	deadline(w, time.Minute)
	var req protocol.FreezeRequest
	if err := decodeMax(w, r, &req, 64<<10); err != nil {
		s.fail(w, r, err)
		return
	}
	f, err := s.maint().CreateFreeze(r.Context(), req, caller(r).Actor())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, f)
}

// listFreezes: GET /freezes, those not yet ended.
func (s *Server) listFreezes(w http.ResponseWriter, r *http.Request) {
	fs, err := s.maint().Freezes(r.Context())
	s.reply(w, r, fs, err)
}

// deleteFreeze: DELETE /freezes/{id}.
func (s *Server) deleteFreeze(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "freeze ID %q is not a number: see freeze list")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.maint().DeleteFreeze(r.Context(), id, caller(r).Actor()); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
