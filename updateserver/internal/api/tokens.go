package api

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

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
	if req.Name == "" || len(req.Name) > 128 || strings.ContainsFunc(req.Name, unicode.IsControl) {
		s.fail(w, r, fault.New(fault.Invalid, "give the token a name of 1 to 128 printable characters (who or what will use it)"))
		return
	}
	now := s.now()
	var exp *time.Time
	if req.ExpiresIn != "" {
		d, err := time.ParseDuration(req.ExpiresIn)
		if err != nil || d <= 0 {
			s.fail(w, r, fault.New(fault.Invalid, "expires %q is not a positive duration (write it like 720h or 30m)", req.ExpiresIn))
			return
		}
		e := now.Add(d).UTC()
		exp = &e
	}
	secret := store.NewSecret(TokenPrefix)
	_, err := s.Store.AddToken(r.Context(), now, store.NewToken{Name: req.Name, Role: req.Role, Secret: secret, ExpiresAt: exp, By: caller(r).Actor()})
	if errors.Is(err, store.ErrTokenNameTaken) {
		s.fail(w, r, fault.New(fault.Conflict, "a live token is already named %q: choose another name, or revoke that one first (updateserver token revoke %s)", req.Name, req.Name))
		return
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, protocol.CreateTokenResponse{Token: secret, Role: req.Role, Name: req.Name, ExpiresAt: exp})
}

func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) {
	tokens, err := s.Store.ListTokens(r.Context())
	s.reply(w, r, tokens, err)
}

func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	n, err := s.Store.RevokeToken(r.Context(), s.now(), name, caller(r).Actor())
	switch {
	case errors.Is(err, store.ErrNotFound):
		err = fault.New(fault.NotFound, "no live token is named %q: see updateserver token list", name)
	case errors.Is(err, store.ErrLastAdmin):
		err = fault.New(fault.Conflict, "%q is the last live admin token: create another admin token first (updateserver token create --role admin)", name)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.Log.Info("token revoked", "name", name, "count", n, "by", caller(r).Actor())
	writeJSON(w, http.StatusOK, protocol.RevokeTokenResponse{Name: name, Revoked: n})
}

// auditLog answers GET /api/v1/audit: entries newest first, at most limit
// of them (default 100, at most 1000), filtered by since (a duration back
// from now or an RFC 3339 time), actor (an operator token's name, or the
// whole actor of anything else) and before (an entry ID: only older
// entries). A client pages by passing the ID of the last entry it got as
// before, until a page holds fewer than limit.
func (s *Server) auditLog(w http.ResponseWriter, r *http.Request) {
	q, err := s.auditQuery(r.URL.Query())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	entries, err := s.Store.AuditLog(r.Context(), q)
	s.reply(w, r, entries, err)
}

// maxActorFilter bounds the actor parameter: longer than any actor.
const maxActorFilter = 512

func (s *Server) auditQuery(v url.Values) (store.AuditQuery, error) {
	q := store.AuditQuery{Limit: protocol.AuditLimitDefault}
	if l := v.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > protocol.AuditLimitMax {
			return q, fault.New(fault.Invalid, "limit %q is not valid: give a whole number from 1 to %d", l, protocol.AuditLimitMax)
		}
		q.Limit = n
	}
	if b := v.Get("before"); b != "" {
		n, err := strconv.ParseInt(b, 10, 64)
		if err != nil || n < 1 {
			return q, fault.New(fault.Invalid, "before %q is not valid: give the ID of an audit entry (a positive whole number)", b)
		}
		q.Before = n
	}
	if since := v.Get("since"); since != "" {
		t, err := protocol.ParseSince(since, s.now())
		if err != nil {
			return q, fault.New(fault.Invalid, "since %v", err)
		}
		q.Since = t
	}
	if a := v.Get("actor"); a != "" {
		if len(a) > maxActorFilter || !utf8.ValidString(a) || strings.ContainsFunc(a, unicode.IsControl) {
			return q, fault.New(fault.Invalid, "actor is not valid: give a token's name (1 to 128 printable characters, see updateserver token list)")
		}
		q.Actor = a
	}
	return q, nil
}
