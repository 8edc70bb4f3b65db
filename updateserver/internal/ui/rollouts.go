package ui

import (
	"net/http"
	"strconv"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/fault"
)

type rolloutsData struct {
	Rollouts []protocol.Rollout
}

// rolloutsView lists the rollouts, newest first: a paused one stands out
// with its reason (the andon cord was pulled).
func (s *Server) rolloutsView(w http.ResponseWriter, r *http.Request, p page, _ string) {
	ros, err := s.Fleet.Rollouts(r.Context())
	if err != nil {
		status, msg := s.userError(r, err)
		s.errorPage(w, r, status, msg)
		return
	}
	p.Title, p.Nav, p.Data = "Rollouts", "rollouts", rolloutsData{Rollouts: ros}
	s.render(w, http.StatusOK, "rollouts.html", p)
}

// rolloutView is one rollout: its state and reason, and each wave's sites
// with where they are and why a site failed.
func (s *Server) rolloutView(w http.ResponseWriter, r *http.Request, p page, _ string) {
	id, ok := rolloutID(w, r, s)
	if !ok {
		return
	}
	ro, err := s.Fleet.Rollout(r.Context(), id)
	if err != nil {
		status, msg := s.userError(r, err)
		s.errorPage(w, r, status, msg)
		return
	}
	p.Title, p.Nav, p.Data = "Rollout "+strconv.FormatInt(id, 10), "rollouts", ro
	s.render(w, http.StatusOK, "rollout.html", p)
}

func rolloutID(w http.ResponseWriter, r *http.Request, s *Server) (int64, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		s.errorPage(w, r, http.StatusNotFound, "There is no rollout "+r.PathValue("id")+".")
		return 0, false
	}
	return id, true
}

// rolloutAction is the rollout page's pause, resume or cancel form: the
// same fleet calls as the API's, audited with the token's name.
func (s *Server) rolloutAction(verb string) func(http.ResponseWriter, *http.Request, page, string) {
	return func(w http.ResponseWriter, r *http.Request, p page, sid string) {
		id, ok := rolloutID(w, r, s)
		if !ok {
			return
		}
		back := Prefix + "rollouts/" + strconv.FormatInt(id, 10)
		var err error
		switch verb {
		case "pause":
			_, err = s.Fleet.PauseRollout(r.Context(), id, p.Token.Actor())
		case "resume":
			_, err = s.Fleet.ResumeRollout(r.Context(), id, p.Token.Actor())
		case "cancel":
			_, err = s.Fleet.CancelRollout(r.Context(), id, p.Token.Actor())
		default:
			err = fault.New(fault.Invalid, "unknown action %s", verb)
		}
		if err != nil {
			s.failed(w, r, sid, back, err)
			return
		}
		past := map[string]string{"pause": "paused", "resume": "resumed", "cancel": "cancelled"}[verb]
		s.done(w, r, sid, back, "Rollout "+strconv.FormatInt(id, 10)+" is "+past+".", false)
	}
}
