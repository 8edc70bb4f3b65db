package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/fault"
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
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, fs)
}

// deleteFreeze: DELETE /freezes/{id}.
func (s *Server) deleteFreeze(w http.ResponseWriter, r *http.Request) {
	v := r.PathValue("id")
	id, err := strconv.ParseInt(v, 10, 64)
	if err != nil || id <= 0 {
		s.fail(w, r, fault.New(fault.Invalid, "freeze ID %q is not a number: see freeze list", v))
		return
	}
	if err := s.maint().DeleteFreeze(r.Context(), id, caller(r).Actor()); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
