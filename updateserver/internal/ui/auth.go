package ui

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/dropless/dropless/updateserver/internal/api"
	"github.com/dropless/dropless/updateserver/internal/store"
)

// cookieName is the session cookie's name.
const cookieName = "updateserver_session"

// maxTokenField bounds the sign-in form's token: longer than any token.
const maxTokenField = 512

// signinReasons are the fixed messages the sign-in page shows for
// ?why=: never text from the request itself.
var signinReasons = map[string]string{
	"expired":   "Your session ended: sign in again.",
	"token":     "The token of your session is no longer valid (revoked or expired): sign in with another.",
	"signedout": "You signed out.",
}

func (s *Server) signinPage(w http.ResponseWriter, r *http.Request) {
	s.render(w, http.StatusOK, "signin.html", page{Title: "Sign in", Flash: signinReasons[r.URL.Query().Get("why")]})
}

// signin exchanges an operator token for a session. A refused token is
// answered 401, which the API's limit of failed authentications per
// source counts (the daemon wraps the dashboard in it).
func (s *Server) signin(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	secret := strings.TrimSpace(r.PostFormValue("token"))
	refuse := func(msg string) {
		s.render(w, http.StatusUnauthorized, "signin.html", page{Title: "Sign in", Flash: msg, Error: true})
	}
	if secret == "" || len(secret) > maxTokenField {
		refuse("Give an operator token (updateserver token create makes one).")
		return
	}
	tok, err := s.Store.Authenticate(r.Context(), secret, s.now())
	switch {
	case errors.Is(err, store.ErrTokenExpired):
		refuse("The token " + tok.Name + " has expired: ask an admin for a new one.")
		return
	case errors.Is(err, store.ErrTokenRevoked):
		refuse("The token " + tok.Name + " was revoked: ask an admin for a new one.")
		return
	case errors.Is(err, store.ErrNotFound):
		refuse("That token is not valid: check it, or ask an admin for one.")
		return
	case err != nil:
		status, msg := s.userError(r, err)
		s.errorPage(w, r, status, msg)
		return
	}
	sess := s.sessions.create(tok.ID, s.now())
	http.SetCookie(w, &http.Cookie{
		Name:     cookieName,
		Value:    sess.id,
		Path:     Prefix,
		HttpOnly: true,
		Secure:   r.TLS != nil,
		SameSite: http.SameSiteStrictMode,
		MaxAge:   int(s.MaxAge.Seconds()),
	})
	http.Redirect(w, r, Prefix, http.StatusSeeOther)
}

func (s *Server) signout(w http.ResponseWriter, r *http.Request, p page, sid string) {
	s.sessions.end(sid)
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: Prefix, HttpOnly: true, Secure: r.TLS != nil,
		SameSite: http.SameSiteStrictMode, MaxAge: -1})
	http.Redirect(w, r, Prefix+"signin?why=signedout", http.StatusSeeOther)
}

// pageHandler handles a request of a signed-in person: p has their
// token, role, CSRF token and any message left for them; sid is the
// session's ID.
type pageHandler func(w http.ResponseWriter, r *http.Request, p page, sid string)

// view wraps a page that shows things: it needs a session whose token's
// role allows need.
func (s *Server) view(h pageHandler, need string) http.Handler {
	return s.signedIn(h, need, false)
}

// action wraps a form's POST: besides the session and role, the form
// must carry the session's CSRF token (and cross-origin requests were
// refused before, by http.CrossOriginProtection).
func (s *Server) action(h pageHandler, need string) http.Handler {
	return s.signedIn(h, need, true)
}

func (s *Server) signedIn(h pageHandler, need string, form bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie(cookieName)
		if err != nil {
			http.Redirect(w, r, Prefix+"signin", http.StatusSeeOther)
			return
		}
		now := s.now()
		sess, ok := s.sessions.get(c.Value, now)
		if !ok {
			http.Redirect(w, r, Prefix+"signin?why=expired", http.StatusSeeOther)
			return
		}
		// A signed-in operator's reads and writes go ahead of the
		// agents' (see store.Priority).
		r = r.WithContext(store.Priority(r.Context()))
		tok, err := s.Store.TokenByID(r.Context(), sess.tokenID, now)
		if errors.Is(err, store.ErrNotFound) {
			s.sessions.end(sess.id)
			http.Redirect(w, r, Prefix+"signin?why=token", http.StatusSeeOther)
			return
		}
		if err != nil {
			status, msg := s.userError(r, err)
			s.errorPage(w, r, status, msg)
			return
		}
		p := page{Token: tok, CSRF: sess.csrf, Can: canFor(tok.Role), Flash: sess.flash, Error: sess.flashErr}
		if form {
			r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
			if !sess.validCSRF(r.PostFormValue("csrf")) {
				p.Flash, p.Error, p.Title = "The form was refused: it did not come from this page (missing or wrong CSRF token). Reload the page and try again.", true, "Refused"
				s.render(w, http.StatusForbidden, "error.html", p)
				return
			}
		}
		if !api.Allowed(tok.Role, need) {
			p.Flash, p.Error, p.Title = "A "+tok.Role+" token may not do this: it needs the "+need+" role.", true, "Forbidden"
			s.render(w, http.StatusForbidden, "error.html", p)
			return
		}
		if err := s.Store.TokenUsed(r.Context(), tok.ID, now); err != nil && !errors.Is(err, context.Canceled) {
			s.Log.Warn("cannot record the token's last use", "token", tok.ID, "err", err)
		}
		h(w, r, p, sess.id)
	})
}

// done ends a form: it leaves msg (an error when isErr) for the next page
// and sends the browser back to where it goes next.
func (s *Server) done(w http.ResponseWriter, r *http.Request, sid, next, msg string, isErr bool) {
	s.sessions.setFlash(sid, msg, isErr)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// failed ends a form whose action returned err.
func (s *Server) failed(w http.ResponseWriter, r *http.Request, sid, next string, err error) {
	_, msg := s.userError(r, err)
	s.done(w, r, sid, next, msg, true)
}
