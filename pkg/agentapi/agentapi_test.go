package agentapi

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
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
