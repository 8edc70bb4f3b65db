package agentapi

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/pkg/tlstrust"
	"github.com/dropless/dropless/pkg/tlstrust/tlstest"
)

// TestDeadlines: a server (or a proxy) that holds a request and never
// answers does not hold the client: each call ends with ErrTimeout once
// its deadline passed (a check-in's long-poll wait plus the grace).
func TestDeadlines(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // then the server notices the client leave
		<-r.Context().Done()
	}))
	defer srv.Close()
	c := New(srv.URL)
	c.Timeout, c.CheckinGrace = 200*time.Millisecond, 200*time.Millisecond
	c.SetCredential("dla_x")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tests := []struct {
		name string
		call func() error
	}{
		{"checkin", func() error {
			_, err := c.Checkin(ctx, protocol.CheckinRequest{State: "idle"}, time.Second)
			return err
		}},
		{"events", func() error {
			_, err := c.SendEvents(ctx, []protocol.Event{{JobID: "j", Seq: 1, State: "downloading"}})
			return err
		}},
		{"enroll", func() error {
			_, err := c.Enroll(ctx, protocol.EnrollRequest{Token: "t"})
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "no complete answer within") {
				t.Fatalf("err = %v, want ErrTimeout", err)
			}
		})
	}
	if ctx.Err() != nil {
		t.Fatal("the calls were cut by the test's context, not by their deadlines")
	}
}

// TestCredentialConcurrent: one goroutine checks in against a server that
// answers 401 and replaces the credential, another sends events with it
// (as the agent's loop and its events sender do). Run with -race.
func TestCredentialConcurrent(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(`{"error":{"code":"unauthorized","message":"the agent credential is not valid"}}`))
	}))
	defer srv.Close()
	c := New(srv.URL)
	c.SetCredential("dla_1")
	ctx := context.Background()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for range 20 {
			if _, err := c.Checkin(ctx, protocol.CheckinRequest{State: "idle"}, 0); !IsUnauthorized(err) {
				t.Errorf("check-in: %v", err)
			}
			c.SetCredential("dla_2")
		}
	}()
	go func() {
		defer wg.Done()
		for range 20 {
			if _, err := c.SendEvents(ctx, nil); !IsUnauthorized(err) {
				t.Errorf("events: %v", err)
			}
		}
	}()
	wg.Wait()
}

// TestTLSConfigSharedWithHTTP2: the agent builds one TLS config and gives
// it to the agent API client and to the TUF fetcher, whose HTTP/2
// transport adds "h2" to its NextProtos. The agent API client must still
// talk to an HTTPS server that offers HTTP/2 (it once offered h2, then
// spoke HTTP/1.1 into it, and every enroll ended in EOF).
func TestTLSConfigSharedWithHTTP2(t *testing.T) {
	ca := tlstest.NewCA(t, "test CA")
	pair := ca.Issue()
	cert, err := tls.X509KeyPair(pair.CertPEM, pair.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"site":"s","credential":"dla_x"}`))
	}))
	srv.EnableHTTP2 = true
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)

	cfg, err := tlstrust.ClientConfig(ca.File)
	if err != nil {
		t.Fatal(err)
	}
	// What an HTTP/2 transport does to the config it is given.
	h2 := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}
	if resp, err := (&http.Client{Transport: h2}).Get(srv.URL); err == nil {
		resp.Body.Close()
	}
	cfg.NextProtos = append(cfg.NextProtos, "h2") // whether or not the request above did it

	c := New(srv.URL, WithTLS(cfg))
	if _, err := c.Enroll(context.Background(), protocol.EnrollRequest{Token: "dle_x", Site: "s", Client: "c", Product: "p"}); err != nil {
		t.Fatalf("enroll over TLS with a config an HTTP/2 transport shares: %v", err)
	}
}

// TestFailover: with several servers the client sticks to the one that
// answers, and moves on to the next after no answer or a 5xx.
func TestFailover(t *testing.T) {
	hits := map[string]int{}
	var mu sync.Mutex
	server := func(name string, status int) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			hits[name]++
			mu.Unlock()
			w.WriteHeader(status)
			io.WriteString(w, `{"accepted":0}`)
		}))
	}
	failing := server("failing", http.StatusServiceUnavailable)
	defer failing.Close()
	ok := server("ok", http.StatusOK)
	defer ok.Close()
	down := httptest.NewServer(http.NotFoundHandler())
	downURL := down.URL
	down.Close() // nothing listens there now

	c := New("")
	c.SetServers([]string{downURL, failing.URL, ok.URL + "/"})
	for i := 0; i < 2; i++ {
		if _, err := c.SendEvents(context.Background(), nil); err == nil {
			t.Fatalf("try %d succeeded against %s", i, c.Server())
		}
	}
	for i := 0; i < 3; i++ {
		if _, err := c.SendEvents(context.Background(), nil); err != nil {
			t.Fatalf("against the working server: %v", err)
		}
	}
	if c.Server() != ok.URL || hits["failing"] != 1 || hits["ok"] != 3 {
		t.Fatalf("in use %s, hits %v: want one try of the failing server, then sticking to the working one", c.Server(), hits)
	}
	// Failover from a server no longer in use changes nothing.
	if got := c.Failover(failing.URL); got != ok.URL {
		t.Fatalf("a stale failover moved the client to %s", got)
	}
}

// TestRetriedOnClosedConnection: the server (or a proxy) closes a kept-
// alive connection as an agent's call goes out on it: a check-in and a
// batch of events are sent again on a new connection and answered (the
// server keeps each once); an enrollment is not sent again (a repeat
// would spend its token), and fails.
func TestRetriedOnClosedConnection(t *testing.T) {
	type connKey struct{}
	var mu sync.Mutex
	var got []string
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := r.Context().Value(connKey{}).(*int)
		*n++
		mu.Lock()
		got = append(got, r.URL.Path)
		mu.Unlock()
		if *n == 2 { // the connection's second request: cut it off unanswered
			c, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				c.Close()
			}
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{}`)
	}))
	srv.Config.ConnContext = func(ctx context.Context, _ net.Conn) context.Context {
		return context.WithValue(ctx, connKey{}, new(int))
	}
	srv.Start()
	defer srv.Close()
	ctx := context.Background()

	c := New(srv.URL)
	c.SetCredential("cred")
	for i := range 2 {
		if _, err := c.Checkin(ctx, protocol.CheckinRequest{InstalledVersion: "1.0.0", State: protocol.StateIdle}, 0); err != nil {
			t.Fatalf("check-in %d: %v, want it sent again and answered", i+1, err)
		}
	}
	if _, err := c.SendEvents(ctx, []protocol.Event{{JobID: "j1", Seq: 1, State: protocol.StateDownloading, At: time.Now()}}); err != nil {
		t.Fatalf("events: %v, want them sent again and answered", err)
	}
	mu.Lock()
	if len(got) != 5 { // check-in, check-in cut off, check-in again, events cut off, events again
		t.Errorf("the server saw %v, want 5 requests", got)
	}
	mu.Unlock()

	e := New(srv.URL)
	e.SetCredential("cred")
	if _, err := e.Checkin(ctx, protocol.CheckinRequest{InstalledVersion: "1.0.0", State: protocol.StateIdle}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Enroll(ctx, protocol.EnrollRequest{Token: "tok", Site: "s", Client: "c", Product: "p"}); err == nil {
		t.Errorf("an enrollment cut off was sent again")
	}
}
