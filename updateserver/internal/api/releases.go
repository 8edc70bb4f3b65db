package api

import (
	"io"
	"net/http"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/fault"
	"github.com/dropless/dropless/updateserver/internal/store"
)

// uploadIdle is how long an upload may stall before the server drops it.
const uploadIdle = 2 * time.Minute

func (s *Server) upload(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength > s.Publisher.MaxUpload {
		s.fail(w, r, fault.New(fault.TooLarge, "the bundle (%d bytes) is larger than this server accepts (%d bytes): raise serve --max-bundle-size or make the bundle smaller", r.ContentLength, s.Publisher.MaxUpload))
		return
	}
	if spliceable(r) && s.uploadSpliced(w, r) {
		return
	}
	s.uploadBody(w, r, r.Body)
}

// uploadBody stages the upload body r, read from the request's connection.
func (s *Server) uploadBody(w http.ResponseWriter, r *http.Request, b io.Reader) {
	body := &idleReader{r: b, rc: http.NewResponseController(w), idle: uploadIdle}
	body.extend()
	up, err := s.Publisher.Upload(r.Context(), body, caller(r).Actor())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, up)
}

func (s *Server) publish(w http.ResponseWriter, r *http.Request) {
	deadline(w, 5*time.Minute)
	var req protocol.PublishRequest
	if err := decode(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	rel, err := s.Publisher.Publish(r.Context(), req, caller(r).Actor())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.Metrics.Published(rel.Length)
	writeJSON(w, http.StatusCreated, rel)
}

func (s *Server) listReleases(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	rs, err := s.Store.ListReleases(r.Context(), store.ReleaseFilter{Product: q.Get("product"), Channel: q.Get("channel")})
	s.reply(w, r, rs, err)
}

func (s *Server) getRelease(w http.ResponseWriter, r *http.Request) {
	rel, err := s.Publisher.Release(r.Context(), r.PathValue("product"), r.PathValue("version"))
	s.reply(w, r, rel, err)
}

func (s *Server) promote(w http.ResponseWriter, r *http.Request) {
	deadline(w, time.Minute)
	var req protocol.PromoteRequest
	if err := decode(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	rel, err := s.Publisher.Promote(r.Context(), r.PathValue("product"), r.PathValue("version"), req.Channel, caller(r).Actor())
	s.reply(w, r, rel, err)
}

func (s *Server) yank(w http.ResponseWriter, r *http.Request) {
	deadline(w, time.Minute)
	var req protocol.YankRequest
	if err := decode(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	rel, err := s.Publisher.Yank(r.Context(), r.PathValue("product"), r.PathValue("version"), req.Reason, caller(r).Actor())
	s.reply(w, r, rel, err)
}

func (s *Server) repoTargets(w http.ResponseWriter, r *http.Request) {
	m, err := s.Store.LatestMetadata(r.Context(), "targets")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, protocol.RepoTargets{Targets: m.Data})
}
