package api

import (
	"net/http"
	"strings"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/fault"
	"github.com/dropless/dropless/updateserver/internal/store"
)

// TokenPrefix starts every operator token, so a leaked one is recognisable.
const TokenPrefix = "dlo_"

func (s *Server) createToken(w http.ResponseWriter, r *http.Request) {
	deadline(w, time.Minute)
	var req protocol.CreateTokenRequest
	if err := decode(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if !protocol.ValidRole(req.Role) {
		s.fail(w, r, fault.New(fault.Invalid, "role %q is not valid: use admin, release, support or viewer", req.Role))
		return
	}
	req.Name = strings.TrimSpace(req.Name)
	if req.Name == "" || len(req.Name) > 128 {
		s.fail(w, r, fault.New(fault.Invalid, "give the token a name of 1 to 128 characters (who or what will use it)"))
		return
	}
	secret := store.NewSecret(TokenPrefix)
	if _, err := s.Store.CreateToken(r.Context(), time.Now(), req.Name, req.Role, secret, caller(r).Actor()); err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, protocol.CreateTokenResponse{Token: secret, Role: req.Role, Name: req.Name})
}

func (s *Server) auditLog(w http.ResponseWriter, r *http.Request) {
	entries, err := s.Store.AuditLog(r.Context(), 1000)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, entries)
}
