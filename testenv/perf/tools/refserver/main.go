// Command refserver is the reference of perf/trigger-latency and
// perf/fleet-scale: the agent API's long-poll, and nothing else, in memory
// on bare net/http. It speaks just enough of the update server's API for
// testenv/loadgen and perf's fleetsim (uploads, releases, enroll tokens,
// enroll, check-in with ?wait, events, upgrades) with no store, no TUF and
// no hashing, so the same client against it measures what fanning out HTTP
// responses costs on this machine. It prints "listening http://ADDR".
//
// It is a yardstick, not a server: tokens are not checked beyond their
// prefix, and everything is lost when it stops.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dropless/dropless/testenv/perf/tools/internal/loopback"
)

type assignment struct {
	JobID   string `json:"job_id"`
	Product string `json:"product"`
	Version string `json:"version"`
	Target  string `json:"target"`
	From    string `json:"from"`
}

type checkinResponse struct {
	Assignment  *assignment `json:"assignment,omitempty"`
	PollSeconds int         `json:"poll_seconds"`
	Window      struct {
		Open bool `json:"open"`
	} `json:"window"`
}

type site struct {
	name, client, product string
	mu                    sync.Mutex
	asg                   *assignment
	changed               chan struct{} // closed and replaced when asg changes
}

type server struct {
	mu       sync.RWMutex
	byCred   map[string]*site
	byClient map[string][]*site
	jobs     atomic.Int64
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "loopback address to listen on")
	flag.Parse()
	ln, err := loopback.Listen(*listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "refserver:", err)
		os.Exit(2)
	}
	s := &server{byCred: map[string]*site{}, byClient: map[string][]*site{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, map[string]string{"status": "ok"}) })
	mux.HandleFunc("POST /api/v1/uploads", func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		writeJSON(w, 201, map[string]any{"upload_id": fmt.Sprintf("up-%d", time.Now().UnixNano()), "sha256": strings.Repeat("0", 64), "length": n})
	})
	mux.HandleFunc("POST /api/v1/releases", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		writeJSON(w, 201, map[string]any{})
	})
	mux.HandleFunc("POST /api/v1/enroll-tokens", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Client string `json:"client"`
			Uses   int    `json:"uses"`
		}
		json.NewDecoder(r.Body).Decode(&req)
		writeJSON(w, 201, map[string]any{"token": "dle_ref", "client": req.Client, "uses": req.Uses, "expires_at": time.Now().Add(time.Hour)})
	})
	mux.HandleFunc("POST /api/v1/agent/enroll", s.enroll)
	mux.HandleFunc("POST /api/v1/agent/checkin", s.checkin)
	mux.HandleFunc("POST /api/v1/agent/events", func(w http.ResponseWriter, r *http.Request) {
		if s.site(r) == nil {
			writeJSON(w, 401, errBody("unknown credential"))
			return
		}
		var req struct {
			Events []json.RawMessage `json:"events"`
		}
		json.NewDecoder(r.Body).Decode(&req)
		writeJSON(w, 200, map[string]int{"accepted": len(req.Events), "duplicate": 0})
	})
	mux.HandleFunc("POST /api/v1/upgrades", s.upgrade)

	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}
	fmt.Fprintln(os.Stderr, "refserver:", srv.Serve(ln))
	os.Exit(1)
}

func errBody(msg string) map[string]any {
	return map[string]any{"error": map[string]string{"code": "bad_request", "message": msg}}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func (s *server) site(r *http.Request) *site {
	cred := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.byCred[cred]
}

func (s *server) enroll(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Token, Site, Client, Product string
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Site == "" || !strings.HasPrefix(req.Token, "dle_") {
		writeJSON(w, 400, errBody("need token, site, client, product"))
		return
	}
	cred := "dla_ref_" + req.Site
	st := &site{name: req.Site, client: req.Client, product: req.Product, changed: make(chan struct{})}
	s.mu.Lock()
	if _, dup := s.byCred[cred]; !dup {
		s.byCred[cred] = st
		s.byClient[req.Client] = append(s.byClient[req.Client], st)
	}
	s.mu.Unlock()
	writeJSON(w, 201, map[string]string{"site": req.Site, "credential": cred})
}

func (s *server) checkin(w http.ResponseWriter, r *http.Request) {
	st := s.site(r)
	if st == nil {
		writeJSON(w, 401, errBody("unknown credential"))
		return
	}
	var req struct {
		Job *struct {
			ID string `json:"job_id"`
		} `json:"job"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeJSON(w, 400, errBody("bad JSON"))
		return
	}
	known := ""
	if req.Job != nil {
		known = req.Job.ID
	}
	var wait time.Duration
	if v := r.URL.Query().Get("wait"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			writeJSON(w, 400, errBody("bad wait"))
			return
		}
		wait = min(time.Duration(n)*time.Second, 5*time.Minute)
	}
	resp := checkinResponse{PollSeconds: 30}
	resp.Window.Open = true
	st.mu.Lock()
	asg, ch := st.asg, st.changed
	st.mu.Unlock()
	if (asg == nil || asg.JobID == known) && wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-ch:
			st.mu.Lock()
			asg = st.asg
			st.mu.Unlock()
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
		t.Stop()
	}
	if asg != nil && asg.JobID != known {
		resp.Assignment = asg
	}
	writeJSON(w, 200, resp)
}

func (s *server) upgrade(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Site, Client, To string
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.To == "" {
		writeJSON(w, 400, errBody("need to, and client or site"))
		return
	}
	s.mu.RLock()
	sites := s.byClient[req.Client]
	s.mu.RUnlock()
	n := 0
	for _, st := range sites {
		if req.Site != "" && st.name != req.Site {
			continue
		}
		id := fmt.Sprintf("job-%d", s.jobs.Add(1))
		st.mu.Lock()
		from := ""
		if st.asg != nil {
			from = st.asg.Version
		}
		st.asg = &assignment{JobID: id, Product: st.product, Version: req.To, Target: st.product + "/" + st.product + "-" + req.To + ".tar.gz", From: from}
		close(st.changed)
		st.changed = make(chan struct{})
		st.mu.Unlock()
		n++
	}
	writeJSON(w, 201, map[string]any{"jobs": []any{}, "count": n})
}
