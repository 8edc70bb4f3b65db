package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/fault"
	"github.com/dropless/dropless/updateserver/internal/store"
)

const siteKey ctxKey = 1

// agentAuth wraps h so that it runs only for a valid agent credential; the
// handler then acts on that credential's site and no other.
func (s *Server) agentAuth(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		secret, ok := bearer(r)
		if !ok || !strings.HasPrefix(secret, protocol.AgentCredentialPrefix) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="updateserver-agent"`)
			writeError(w, http.StatusUnauthorized, protocol.CodeUnauthorized, "missing agent credential: enroll the agent first")
			return
		}
		site, err := s.Store.SiteByCredential(r.Context(), secret)
		if errors.Is(err, store.ErrNotFound) {
			writeError(w, http.StatusUnauthorized, protocol.CodeUnauthorized, "the agent credential is not valid: enroll the agent again with a new enroll token")
			return
		}
		if err != nil {
			s.fail(w, r, err)
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), siteKey, site)))
	})
}

func agentSite(r *http.Request) string {
	s, _ := r.Context().Value(siteKey).(string)
	return s
}

func (s *Server) enroll(w http.ResponseWriter, r *http.Request) {
	deadline(w, time.Minute)
	var req protocol.EnrollRequest
	if err := decode(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if tok, ok := bearer(r); ok && req.Token == "" {
		req.Token = tok
	}
	resp, err := s.Fleet.Enroll(r.Context(), req)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, resp)
}

// maxAgentBody bounds an agent's check-in or batch of events: a real
// agent's batch of 200 events with hook output in their messages is well
// below it.
const maxAgentBody = 2 << 20

// errLimited is what a check-in's charge returns past the limit.
var errLimited = errors.New("past the limit of check-ins that write")

// maxWait caps a long-poll.
const maxWait = 5 * time.Minute

func (s *Server) checkin(w http.ResponseWriter, r *http.Request) {
	deadline(w, time.Minute)
	var req protocol.CheckinRequest
	if err := decodeMax(w, r, &req, maxAgentBody); err != nil {
		s.fail(w, r, err)
		return
	}
	// Only a check-in that costs a write is charged (see Limits).
	var retry time.Duration
	charge := func() error {
		ok, wait := s.limits.checkins.allow(agentSite(r))
		if !ok {
			retry = wait
			return errLimited
		}
		return nil
	}
	var wait time.Duration
	if v := r.URL.Query().Get("wait"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			s.fail(w, r, fault.New(fault.Invalid, "wait=%q: give whole seconds", v))
			return
		}
		wait = min(time.Duration(n)*time.Second, maxWait)
		// The body is read; a held call must not be cut by the read deadline.
		http.NewResponseController(w).SetReadDeadline(time.Time{})
	}
	done := s.Metrics.CheckIn(wait > 0)
	defer done()
	resp, err := s.Fleet.CheckinCharged(r.Context(), agentSite(r), req, wait, charge)
	if errors.Is(err, errLimited) {
		tooMany(w, retry, "too many changing check-ins from site "+agentSite(r)+" (an agent reports a change about once per poll interval)")
		return
	}
	s.reply(w, r, resp, err)
}

func (s *Server) agentEvents(w http.ResponseWriter, r *http.Request) {
	if ok, retry := s.limits.events.allow(agentSite(r)); !ok {
		tooMany(w, retry, "too many event batches from site "+agentSite(r)+" (send up to 500 events per batch)")
		return
	}
	// One batch at a time per site, as an agent sends them: a flood of
	// parallel batches would hold their bodies in memory all at once.
	if !s.limits.eventsInFlight.enter(agentSite(r)) {
		tooMany(w, time.Second, "site "+agentSite(r)+" is already sending a batch of events: send one at a time")
		return
	}
	defer s.limits.eventsInFlight.leave(agentSite(r))
	deadline(w, time.Minute)
	var req protocol.EventsRequest
	if err := decodeMax(w, r, &req, maxAgentBody); err != nil {
		s.fail(w, r, err)
		return
	}
	resp, err := s.Fleet.Events(r.Context(), agentSite(r), req.Events)
	s.reply(w, r, resp, err)
}
