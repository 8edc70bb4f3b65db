// Package api is the server's HTTP surface: the operator API under /api/v1
// (one file per resource), the TUF repository under /tuf/, /healthz and
// /metrics.
// Every /api/v1 call is authenticated with a bearer token and checked
// against the caller's role; every error is JSON
// {"error":{"code":"...","message":"..."}} with the matching status.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/fault"
	"github.com/dropless/dropless/updateserver/internal/fleet"
	"github.com/dropless/dropless/updateserver/internal/metrics"
	"github.com/dropless/dropless/updateserver/internal/publish"
	"github.com/dropless/dropless/updateserver/internal/store"
)

// Server serves the HTTP API.
type Server struct {
	Store     *store.Store
	Publisher *publish.Publisher
	Fleet     *fleet.Fleet
	Log       *slog.Logger
	Now       func() time.Time
	// Limits are the rate limits (DefaultLimits when zero).
	Limits Limits
	// Metrics, when set, is served at /metrics and counts requests.
	Metrics *metrics.Metrics
	// MetricsPublic serves /metrics without a token; otherwise it needs
	// an operator token (viewer or above).
	MetricsPublic bool

	limits *limiters
	spec   []byte // /api/v1/openapi.json
}

// maxJSONBody bounds JSON request bodies. Publishing carries signed targets
// metadata, which go-tuf clients accept up to 5 MB.
const maxJSONBody = 6 << 20

// Handler returns the server's routes.
func (s *Server) Handler() http.Handler {
	if s.Limits == (Limits{}) {
		s.Limits = DefaultLimits
	}
	s.limits = newLimiters(s.Limits, s.Log, s.Now)
	spec, err := buildSpec(s.routes())
	if err != nil {
		// The routes are fixed at build time: a route the generator cannot
		// describe is a programming error TestOpenAPI catches.
		panic(fmt.Sprintf("describe the API: %v", err))
	}
	s.spec = spec
	mux := http.NewServeMux()
	for _, rt := range s.routes() {
		s.handle(mux, rt)
	}
	v1 := protocol.APIVersion
	mux.HandleFunc(v1+"/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, protocol.CodeNotFound, fmt.Sprintf("no API endpoint %s %s", r.Method, r.URL.Path))
	})
	return s.limits.limitAuthFailures(mux)
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.Store.Ping(ctx); err != nil {
		writeError(w, http.StatusServiceUnavailable, protocol.CodeUnavailable, "the store does not answer")
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // constraints like ">= 2.0" stay readable
	enc.Encode(v)
}

// reply answers v as JSON (200), or err when it is not nil.
func (s *Server) reply(w http.ResponseWriter, r *http.Request, v any, err error) {
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// pathID parses the request's {id}, a positive number; else it returns a
// fault.Invalid error from invalid, a format with %q for the value.
func pathID(r *http.Request, invalid string) (int64, error) {
	v := r.PathValue("id")
	id, err := strconv.ParseInt(v, 10, 64)
	if err != nil || id <= 0 {
		return 0, fault.New(fault.Invalid, invalid, v)
	}
	return id, nil
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, protocol.ErrorResponse{Error: protocol.ErrorBody{Code: code, Message: msg}})
}

// fail answers err: user-facing errors with their message, anything else as
// an internal error whose details go to the log only.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	if fe, ok := fault.As(err); ok {
		status, code := http.StatusBadRequest, protocol.CodeBadRequest
		switch fe.Kind {
		case fault.NotFound:
			status, code = http.StatusNotFound, protocol.CodeNotFound
		case fault.Conflict:
			status, code = http.StatusConflict, protocol.CodeConflict
		case fault.TooLarge:
			status, code = http.StatusRequestEntityTooLarge, protocol.CodeTooLarge
		case fault.Unavailable:
			status, code = http.StatusServiceUnavailable, protocol.CodeUnavailable
		case fault.Unauthorized:
			status, code = http.StatusUnauthorized, protocol.CodeUnauthorized
		case fault.Forbidden:
			status, code = http.StatusForbidden, protocol.CodeForbidden
		}
		writeError(w, status, code, fe.Msg)
		return
	}
	if errors.Is(err, context.Canceled) {
		return // the client went away
	}
	s.Log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	writeError(w, http.StatusInternalServerError, protocol.CodeInternal, "internal error: see the server log")
}

// decode reads a JSON body of at most maxJSONBody bytes into v. Unknown
// fields are ignored, as the protocol promises.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	return decodeMax(w, r, v, maxJSONBody)
}

// decodeMax is decode with a body of at most limit bytes.
func decodeMax(w http.ResponseWriter, r *http.Request, v any, limit int64) error {
	body := http.MaxBytesReader(w, r.Body, limit)
	if err := json.NewDecoder(body).Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return fault.New(fault.TooLarge, "the request body is larger than %d bytes", limit)
		}
		if errors.Is(err, io.EOF) {
			return fault.New(fault.Invalid, "the request body is empty: send a JSON object")
		}
		return fault.New(fault.Invalid, "the request body is not valid JSON: %v", err)
	}
	return nil
}

// deadline bounds how long a small request may take to arrive, so a slow
// client cannot hold a connection forever.
func deadline(w http.ResponseWriter, d time.Duration) {
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Now().Add(d))
}
