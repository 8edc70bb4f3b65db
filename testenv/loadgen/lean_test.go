package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/agentapi"
	"github.com/dropless/dropless/pkg/protocol"
)

// seen is a request as a server on loopback received it.
type seen struct {
	method, uri, auth, ctype, body string
}

// recordingServer answers every agent call with answer (a check-in's
// JSON) on a real loopback HTTP server and records what it received and
// how many connections were opened to it. (It stands in for the update
// server's agent API, whose answers do not matter here: the lean client's
// own requests, errors and connections do. The end-to-end
// TestFleetScenario runs both clients against the real server.)
func recordingServer(t *testing.T, h http.HandlerFunc) (*httptest.Server, func() []seen, *atomic.Int64) {
	var mu sync.Mutex
	var got []seen
	var conns atomic.Int64
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, seen{r.Method, r.RequestURI, r.Header.Get("Authorization"), r.Header.Get("Content-Type"), string(b)})
		mu.Unlock()
		h(w, r)
	}))
	ts.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	ts.Start()
	t.Cleanup(ts.Close)
	return ts, func() []seen { mu.Lock(); defer mu.Unlock(); return append([]seen(nil), got...) }, &conns
}

func answerJSON(v any) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(v)
	}
}

func newTestLean(t *testing.T, ctx context.Context, url string) *leanAgent {
	t.Helper()
	a, err := newLeanAgent(ctx, url, "cred-1", dialer(nil))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestLeanAgentSendsTheAgentsRequests: the lean client's check-ins and
// events reach the server as the agent's own client's do (method, path
// and wait, credential, content type, body), one connection for all of
// them, and it reads the answers as the agent's client does.
func TestLeanAgentSendsTheAgentsRequests(t *testing.T) {
	want := protocol.CheckinResponse{Assignment: &protocol.Assignment{JobID: "job-1", From: "1.0.0", Version: "1.1.0"}}
	ts, got, conns := recordingServer(t, answerJSON(want))
	ctx := context.Background()
	lean := newTestLean(t, ctx, ts.URL)
	own := &agentapi.Client{BaseURL: ts.URL, Credential: "cred-1", HTTP: &http.Client{}}
	req := protocol.CheckinRequest{InstalledVersion: "1.0.0", AgentVersion: "loadgen", OS: "linux", Arch: "amd64", State: protocol.StateIdle,
		Job: &protocol.JobStatus{ID: "job-0", From: "0.9.0", To: "1.0.0", Result: protocol.ResultSucceeded}}
	evs := []protocol.Event{{JobID: "job-1", Seq: 1, State: protocol.StateDownloading, At: time.Unix(1, 0).UTC()}}
	for _, c := range []fleetAgent{lean, own} {
		for _, wait := range []time.Duration{0, 60 * time.Second} {
			resp, err := c.Checkin(ctx, req, wait)
			if err != nil {
				t.Fatalf("%T: %v", c, err)
			}
			if resp.Assignment == nil || *resp.Assignment != *want.Assignment {
				t.Errorf("%T read the answer as %+v, want %+v", c, resp.Assignment, want.Assignment)
			}
		}
		if _, err := c.SendEvents(ctx, evs); err != nil {
			t.Fatalf("%T: %v", c, err)
		}
	}
	all := got()
	if len(all) != 6 {
		t.Fatalf("the server saw %d requests, want 6", len(all))
	}
	for i := range 3 {
		if all[i] != all[i+3] {
			t.Errorf("request %d:\nlean  %+v\nagent %+v", i, all[i], all[i+3])
		}
	}
	if all[1].uri != "/api/v1/agent/checkin?wait=60" || all[1].auth != "Bearer cred-1" {
		t.Errorf("long-poll sent as %+v", all[1])
	}
	// Each client's three calls went on one connection, kept alive.
	if n := conns.Load(); n != 2 {
		t.Errorf("%d connections for two clients' calls, want 2 (one each, kept alive)", n)
	}
}

// TestLeanAgentSendsAgainOnAClosedConnection: when the server closed the
// kept-alive connection (idle, restarted), the call goes again once on a
// new connection and succeeds, as the agent's client's does.
func TestLeanAgentSendsAgainOnAClosedConnection(t *testing.T) {
	ts, got, conns := recordingServer(t, answerJSON(protocol.CheckinResponse{}))
	lean := newTestLean(t, context.Background(), ts.URL)
	req := protocol.CheckinRequest{InstalledVersion: "1.0.0", State: protocol.StateIdle}
	if _, err := lean.Checkin(context.Background(), req, 0); err != nil {
		t.Fatal(err)
	}
	ts.CloseClientConnections()
	time.Sleep(50 * time.Millisecond) // the close reaches the client's side
	if _, err := lean.Checkin(context.Background(), req, 0); err != nil {
		t.Fatalf("check-in after the server closed the connection: %v", err)
	}
	if n, m := conns.Load(), len(got()); n != 2 || m != 2 {
		t.Errorf("%d connections, %d requests received; want 2 and 2", n, m)
	}

	// An answer with Connection: close: the next call dials anew.
	ts2, _, conns2 := recordingServer(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Connection", "close")
		answerJSON(protocol.CheckinResponse{})(w, nil)
	})
	lean2 := newTestLean(t, context.Background(), ts2.URL)
	for range 3 {
		if _, err := lean2.Checkin(context.Background(), req, 0); err != nil {
			t.Fatal(err)
		}
	}
	if n := conns2.Load(); n != 3 {
		t.Errorf("%d connections for 3 answers with Connection: close, want 3", n)
	}
}

// TestLeanAgentErrors: an error answer, no answer in time and the agent's
// end are the errors the fleet scenario counts, as the agent's client
// gives them.
func TestLeanAgentErrors(t *testing.T) {
	release := make(chan struct{})
	ts, _, _ := recordingServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer cred-1" {
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"error":{"code":"unauthorized","message":"unknown agent credential"}}`))
			return
		}
		select { // a long-poll held until the test ends
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	req := protocol.CheckinRequest{InstalledVersion: "1.0.0", State: protocol.StateIdle}

	bad, err := newLeanAgent(context.Background(), ts.URL, "forged", dialer(nil))
	if err != nil {
		t.Fatal(err)
	}
	_, err = bad.Checkin(context.Background(), req, 0)
	var ae *agentapi.Error
	if !errors.As(err, &ae) || ae.Status != 401 || ae.Message != "unknown agent credential" || !agentapi.IsUnauthorized(err) {
		t.Errorf("refused credential: %v, want an *agentapi.Error 401 with the server's message", err)
	}
	if errKind("poll", err) != "poll-401" {
		t.Errorf("counted as %q", errKind("poll", err))
	}

	held := newTestLean(t, context.Background(), ts.URL)
	held.grace = 200 * time.Millisecond
	t0 := time.Now()
	_, err = held.Checkin(context.Background(), req, 0)
	if !errors.Is(err, agentapi.ErrTimeout) || errKind("poll", err) != "poll-timeout" {
		t.Errorf("no answer within the grace: %v, want agentapi.ErrTimeout", err)
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("gave up after %s, its deadline was 200ms", d)
	}

	ctx, cancel := context.WithCancel(context.Background())
	ended := newTestLean(t, ctx, ts.URL)
	done := make(chan error, 1)
	go func() { _, err := ended.Checkin(ctx, req, 60*time.Second); done <- err }()
	time.Sleep(100 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("a long-poll when the agent ended: %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a held long-poll did not end with its agent")
	}
}

// TestShardAgentsSpreadOverSources: a shard's agents dial from its source
// addresses in turn, with either client: each source address offers its
// own ephemeral ports, and 100,000 agents need several (a lean agent
// once had a dialer of its own, and every one dialed from the same
// address).
func TestShardAgentsSpreadOverSources(t *testing.T) {
	var mu sync.Mutex
	from := map[string]int{}
	var arrived sync.WaitGroup // the agents' check-ins are held until all six came: six connections
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		mu.Lock()
		from[host]++
		mu.Unlock()
		arrived.Done()
		arrived.Wait()
		answerJSON(protocol.CheckinResponse{})(w, r)
	}))
	defer ts.Close()
	sources, err := parseSources("127.0.0.2-127.0.0.4")
	if err != nil {
		t.Fatal(err)
	}
	for _, client := range []string{"lean", "agentapi"} {
		clear(from)
		arrived.Add(6)
		f := &fleet{sources: sources, client: client}
		newAgent := f.agentMaker(context.Background(), 6)
		errs := make(chan error, 6)
		for i := range 6 {
			a, err := newAgent(ts.URL, fmt.Sprintf("cred-%d", i))
			if err != nil {
				t.Fatal(err)
			}
			go func() {
				_, err := a.Checkin(context.Background(), protocol.CheckinRequest{InstalledVersion: "1.0.0"}, 0)
				errs <- err
			}()
		}
		for range 6 {
			if err := <-errs; err != nil {
				t.Fatalf("%s: %v", client, err)
			}
		}
		mu.Lock()
		if len(from) != 3 || from["127.0.0.2"] != 2 || from["127.0.0.3"] != 2 || from["127.0.0.4"] != 2 {
			t.Errorf("%s: 6 agents came from %v, want 2 from each of 127.0.0.2-4", client, from)
		}
		mu.Unlock()
	}
}
