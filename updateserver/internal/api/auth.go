package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/store"
)

type ctxKey int

const tokenKey ctxKey = 0

// rank orders roles: a role may do what any lower-ranked role may. admin
// may do everything; release and support each add their own powers over
// viewer, and neither has the other's.
func allowed(have, need string) bool {
	switch have {
	case protocol.RoleAdmin:
		return true
	case protocol.RoleRelease, protocol.RoleSupport:
		return need == have || need == protocol.RoleViewer
	case protocol.RoleViewer:
		return need == protocol.RoleViewer
	}
	return false
}

// auth wraps h so that it runs only for a valid operator token whose role
// allows need.
func (s *Server) auth(h http.HandlerFunc, need string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		secret, ok := bearer(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="updateserver"`)
			writeError(w, http.StatusUnauthorized, protocol.CodeUnauthorized, "missing bearer token: pass --token or set UPDATESERVER_TOKEN")
			return
		}
		// An operator's reads and writes go ahead of the agents' (see
		// store.Priority): the token's lookup too, which the limit of
		// failed authentications per source bounds.
		r = r.WithContext(store.Priority(r.Context()))
		now := s.now()
		tok, err := s.Store.Authenticate(r.Context(), secret, now)
		switch {
		case errors.Is(err, store.ErrTokenExpired):
			w.Header().Set("WWW-Authenticate", `Bearer realm="updateserver", error="invalid_token"`)
			writeError(w, http.StatusUnauthorized, protocol.CodeUnauthorized,
				fmt.Sprintf("the token %q expired at %s: ask an admin for a new one (updateserver token create)", tok.Name, tok.ExpiresAt.UTC().Format(time.RFC3339)))
			return
		case errors.Is(err, store.ErrTokenRevoked):
			w.Header().Set("WWW-Authenticate", `Bearer realm="updateserver", error="invalid_token"`)
			writeError(w, http.StatusUnauthorized, protocol.CodeUnauthorized,
				fmt.Sprintf("the token %q was revoked: ask an admin for a new one (updateserver token create)", tok.Name))
			return
		case errors.Is(err, store.ErrNotFound):
			w.Header().Set("WWW-Authenticate", `Bearer realm="updateserver", error="invalid_token"`)
			writeError(w, http.StatusUnauthorized, protocol.CodeUnauthorized, "the token is not valid: check --token or UPDATESERVER_TOKEN")
			return
		case err != nil:
			s.fail(w, r, err)
			return
		}
		if !allowed(tok.Role, need) {
			writeError(w, http.StatusForbidden, protocol.CodeForbidden,
				fmt.Sprintf("a %s token may not do this: it needs the %s role", tok.Role, need))
			return
		}
		// At most one write a minute per token; a failure to record the
		// use does not refuse the request.
		if err := s.Store.TokenUsed(r.Context(), tok.ID, now); err != nil && !errors.Is(err, context.Canceled) {
			s.Log.Warn("cannot record the token's last use", "token", tok.ID, "err", err)
		}
		h(w, r.WithContext(context.WithValue(r.Context(), tokenKey, tok)))
	})
}

func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, secret, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || secret == "" {
		return "", false
	}
	return strings.TrimSpace(secret), true
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// caller returns the token the request was authenticated with.
func caller(r *http.Request) store.Token {
	t, _ := r.Context().Value(tokenKey).(store.Token)
	return t
}

// Allowed says whether a token of role have may call a route that needs
// role need: the dashboard (package ui) shows and accepts an action only
// where the API would.
func Allowed(have, need string) bool { return allowed(have, need) }

// RoleOf returns the role an operator route of the API needs, by its
// pattern ("POST /api/v1/upgrades"): the dashboard's actions need what the
// API's do. It panics for a pattern that is not an operator route, a
// programming error the dashboard's tests catch.
func RoleOf(pattern string) string {
	for _, rt := range (&Server{}).routes() {
		if rt.pattern == pattern && rt.access == operator {
			return rt.role
		}
	}
	panic("api.RoleOf: no operator route " + pattern)
}

// LimitAuthFailures wraps h (another handler of the same server, such as
// the dashboard) so that its 401 answers count against the source's limit
// of failed authentications, shared with the API. Call it after Handler.
func (s *Server) LimitAuthFailures(h http.Handler) http.Handler {
	return s.limits.limitAuthFailures(h)
}
