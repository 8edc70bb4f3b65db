package api

import (
	"net/http"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
)

// follow makes a site, or a client's sites, follow a channel: PUT
// /follows. The answer lists the jobs made at once.
func (s *Server) follow(w http.ResponseWriter, r *http.Request) {
	deadline(w, time.Minute)
	var req protocol.FollowRequest
	if err := decodeMax(w, r, &req, 64<<10); err != nil {
		s.fail(w, r, err)
		return
	}
	resp, err := s.Fleet.Follow(r.Context(), req, caller(r).Actor())
	s.reply(w, r, resp, err)
}

// unfollow makes a site, or a client's sites, follow no channel: DELETE
// /follows?site=S or ?client=C.
func (s *Server) unfollow(w http.ResponseWriter, r *http.Request) {
	deadline(w, time.Minute)
	q := r.URL.Query()
	resp, err := s.Fleet.Unfollow(r.Context(), q.Get("site"), q.Get("client"), caller(r).Actor())
	s.reply(w, r, resp, err)
}
