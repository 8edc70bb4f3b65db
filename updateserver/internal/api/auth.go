package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

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
		tok, err := s.Store.TokenBySecret(r.Context(), secret)
		if errors.Is(err, store.ErrNotFound) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="updateserver", error="invalid_token"`)
			writeError(w, http.StatusUnauthorized, protocol.CodeUnauthorized, "the token is not valid: check --token or UPDATESERVER_TOKEN")
			return
		}
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if !allowed(tok.Role, need) {
			writeError(w, http.StatusForbidden, protocol.CodeForbidden,
				fmt.Sprintf("a %s token may not do this: it needs the %s role (or admin)", tok.Role, need))
			return
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

// caller returns the token the request was authenticated with.
func caller(r *http.Request) store.Token {
	t, _ := r.Context().Value(tokenKey).(store.Token)
	return t
}
