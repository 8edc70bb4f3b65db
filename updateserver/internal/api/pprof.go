package api

import (
	"net/http"
	"net/http/pprof"
	"strconv"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
)

// pprofRoute serves the Go runtime's profiles (net/http/pprof) to an
// admin: where a busy server spends its CPU, what its goroutines wait
// for, its heap. `go tool pprof -http=: "URL/api/v1/debug/pprof/profile?seconds=20"`
// with the token in an Authorization header (pprof's -H is not there:
// save it with curl -H "Authorization: Bearer $T" -o cpu.pb.gz first).
// {profile}: empty (the index), profile (CPU, ?seconds=N), trace
// (?seconds=N), heap, allocs, goroutine, block, mutex, threadcreate,
// cmdline, symbol.
func (s *Server) pprofRoute(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("profile")
	// A CPU profile or a trace takes ?seconds (30 by default) to answer.
	secs, err := strconv.Atoi(r.URL.Query().Get("seconds"))
	if err != nil || secs <= 0 {
		secs = 30
	}
	http.NewResponseController(w).SetWriteDeadline(time.Now().Add(time.Duration(secs)*time.Second + time.Minute))
	switch name {
	case "":
		pprof.Index(w, r)
	case "profile":
		pprof.Profile(w, r)
	case "trace":
		pprof.Trace(w, r)
	case "cmdline":
		pprof.Cmdline(w, r)
	case "symbol":
		pprof.Symbol(w, r)
	case "heap", "allocs", "goroutine", "block", "mutex", "threadcreate":
		pprof.Handler(name).ServeHTTP(w, r)
	default:
		writeError(w, http.StatusNotFound, protocol.CodeNotFound,
			"no profile "+strconv.Quote(name)+": use profile, trace, heap, allocs, goroutine, block, mutex, threadcreate, cmdline or symbol")
	}
}
