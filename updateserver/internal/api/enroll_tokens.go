package api

import (
	"errors"
	"net/http"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/fault"
	"github.com/dropless/dropless/updateserver/internal/store"
)

func (s *Server) createEnrollToken(w http.ResponseWriter, r *http.Request) {
	deadline(w, time.Minute)
	var req protocol.CreateEnrollTokenRequest
	if err := decode(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	resp, err := s.Fleet.CreateEnrollToken(r.Context(), req, caller(r).Actor())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, resp)
}

func (s *Server) listEnrollTokens(w http.ResponseWriter, r *http.Request) {
	tokens, err := s.Store.ListEnrollTokens(r.Context())
	s.reply(w, r, tokens, err)
}

func (s *Server) revokeEnrollToken(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "enroll token ID %q is not valid: give the number enroll-token list shows")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	err = s.Store.RevokeEnrollToken(r.Context(), s.now(), id, caller(r).Actor())
	switch {
	case errors.Is(err, store.ErrNotFound):
		err = fault.New(fault.NotFound, "there is no enroll token %d: see updateserver enroll-token list", id)
	case errors.Is(err, store.ErrAlreadyRevoked):
		err = fault.New(fault.Conflict, "enroll token %d was already revoked", id)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": id, "revoked": true})
}
