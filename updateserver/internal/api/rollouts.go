package api

import (
	"context"
	"net/http"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/fleet"
)

// createRollout: POST /rollouts.
func (s *Server) createRollout(w http.ResponseWriter, r *http.Request) {
	deadline(w, 5*time.Minute)
	var req protocol.RolloutRequest
	if err := decodeMax(w, r, &req, maxJSONBody); err != nil {
		s.fail(w, r, err)
		return
	}
	ro, err := s.Fleet.CreateRollout(r.Context(), req, caller(r).Actor())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, ro)
}

// listRollouts: GET /rollouts, newest first.
func (s *Server) listRollouts(w http.ResponseWriter, r *http.Request) {
	ros, err := s.Fleet.Rollouts(r.Context())
	s.reply(w, r, ros, err)
}

const notRolloutID = "rollout ID %q is not a number: see rollout list"

// getRollout: GET /rollouts/{id}, with its waves and sites.
func (s *Server) getRollout(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, notRolloutID)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	ro, err := s.Fleet.Rollout(r.Context(), id)
	s.reply(w, r, ro, err)
}

// rolloutAction serves POST /rollouts/{id}/pause, resume and cancel.
func (s *Server) rolloutAction(act func(f *fleet.Fleet, ctx context.Context, id int64, actor string) (protocol.Rollout, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := pathID(r, notRolloutID)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		ro, err := act(s.Fleet, r.Context(), id, caller(r).Actor())
		s.reply(w, r, ro, err)
	}
}
