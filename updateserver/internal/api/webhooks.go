package api

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/fault"
	"github.com/dropless/dropless/updateserver/internal/notify"
	"github.com/dropless/dropless/updateserver/internal/store"
)

// maxWebhookURL bounds a webhook's URL.
const maxWebhookURL = 2048

// createWebhook answers POST /api/v1/webhooks (admin). The URL is where
// the server will POST: only http and https, without user info, and
// redirects are not followed (Sender), so a webhook reaches the one
// address an admin gave. Admin-only creation is the SSRF boundary: an
// admin can already reach what the server reaches.
func (s *Server) createWebhook(w http.ResponseWriter, r *http.Request) {
	deadline(w, time.Minute)
	var req protocol.CreateWebhookRequest
	if err := decode(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if err := checkWebhookURL(req.URL); err != nil {
		s.fail(w, r, err)
		return
	}
	events := []string{}
	for _, e := range req.Events {
		e = strings.TrimSpace(e)
		if e == "" || slices.Contains(events, e) {
			continue
		}
		if err := notify.ValidPattern(e); err != nil {
			s.fail(w, r, fault.Wrap(fault.Invalid, err))
			return
		}
		events = append(events, e)
	}
	secret := req.Secret
	if secret == "" {
		secret = notify.NewSecret()
	} else if _, err := notify.ParseSecret(secret); err != nil {
		s.fail(w, r, fault.Wrap(fault.Invalid, err))
		return
	}
	hook, err := s.Store.CreateWebhook(r.Context(), s.now(), store.NewWebhook{URL: req.URL, Events: events, Secret: secret, By: caller(r).Actor()})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.Log.Info("webhook created", "id", hook.ID, "url", hook.URL, "events", events, "by", caller(r).Actor())
	writeJSON(w, http.StatusCreated, protocol.CreateWebhookResponse{Webhook: hook, Secret: secret})
}

func checkWebhookURL(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case raw == "":
		return fault.New(fault.Invalid, "give the URL to POST events to (--url https://...)")
	case len(raw) > maxWebhookURL:
		return fault.New(fault.Invalid, "the webhook URL is longer than %d bytes", maxWebhookURL)
	case err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https"):
		return fault.New(fault.Invalid, "webhook URL %q is not valid: give an absolute http:// or https:// URL", raw)
	case u.User != nil:
		return fault.New(fault.Invalid, "the webhook URL holds a user name or password, which webhook list would show: receivers check the signature instead")
	}
	return nil
}

func (s *Server) listWebhooks(w http.ResponseWriter, r *http.Request) {
	hooks, err := s.Store.ListWebhooks(r.Context())
	s.reply(w, r, hooks, err)
}

func (s *Server) deleteWebhook(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "webhook ID %q is not valid: see updateserver webhook list")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	err = s.Store.DeleteWebhook(r.Context(), s.now(), id, caller(r).Actor())
	if errors.Is(err, store.ErrNotFound) {
		err = fault.New(fault.NotFound, "no webhook has ID %d: see updateserver webhook list", id)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.Log.Info("webhook deleted", "id", id, "by", caller(r).Actor())
	w.WriteHeader(http.StatusNoContent)
}

// metrics answers /metrics (Prometheus text format); 404 when the server
// runs without metrics.
func (s *Server) metrics(w http.ResponseWriter, r *http.Request) {
	if s.Metrics == nil {
		writeError(w, http.StatusNotFound, protocol.CodeNotFound, "this server runs without metrics")
		return
	}
	s.Metrics.Handler().ServeHTTP(w, r)
}
