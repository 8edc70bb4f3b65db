package fetch

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// TestFetcher: the fetcher go-tuf uses reads at most maxLength+1 bytes,
// reports HTTP statuses as go-tuf's *metadata.ErrDownloadHTTP (404
// included, which the updater needs for N+1.root.json), retries transient
// failures and honours its context.
func TestFetcher(t *testing.T) {
	const maxLength = 1000
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		switch r.URL.Path {
		case "/ok.json":
			w.Write([]byte(strings.Repeat("x", maxLength)))
		case "/long.json": // chunked: no Content-Length to refuse it by
			for range 10 {
				w.Write([]byte(strings.Repeat("x", maxLength)))
				w.(http.Flusher).Flush()
			}
		case "/announced.json":
			w.Header().Set("Content-Length", strconv.Itoa(maxLength+1))
			w.Write([]byte(strings.Repeat("x", maxLength+1)))
		case "/flaky.json":
			if n == 1 {
				http.Error(w, "busy", http.StatusServiceUnavailable)
				return
			}
			w.Write([]byte("{}"))
		case "/forbidden.json", "/7.root.json":
			http.Error(w, "no", http.StatusForbidden)
		case "/hang.json":
			<-r.Context().Done()
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()

	tests := []struct {
		name      string
		path      string
		cancel    bool
		wantLen   int
		wantErr   func(error) bool
		wantCalls int64
		wantRead  int64 // -1: not checked
	}{
		{name: "within the limit", path: "/ok.json", wantLen: maxLength, wantCalls: 1, wantRead: maxLength},
		{name: "too long, chunked", path: "/long.json", wantErr: isLengthMismatch, wantCalls: 1, wantRead: maxLength + 1},
		{name: "too long, announced", path: "/announced.json", wantErr: isLengthMismatch, wantCalls: 1, wantRead: 0},
		{name: "404", path: "/1.root.json", wantErr: httpStatus(404), wantCalls: 1, wantRead: -1},
		{name: "403 not retried", path: "/forbidden.json", wantErr: httpStatus(403), wantCalls: 1, wantRead: -1},
		{name: "403 for a root version is a 404", path: "/7.root.json", wantErr: httpStatus(404), wantCalls: 1, wantRead: -1},
		{name: "503 retried", path: "/flaky.json", wantLen: 2, wantCalls: 2, wantRead: -1},
		{name: "canceled", path: "/hang.json", cancel: true, wantErr: func(err error) bool { return errors.Is(err, context.Canceled) }, wantCalls: 1, wantRead: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls.Store(0)
			hc, counter := newCountingClient()
			f := &httpFetcher{client: hc, log: slog.New(slog.DiscardHandler), timeout: 10 * time.Second, attempts: 3, backoff: time.Millisecond}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.cancel {
				time.AfterFunc(50*time.Millisecond, cancel)
			}
			unbind := f.bind(ctx)
			data, err := f.DownloadFile(srv.URL+tt.path, maxLength, 0)
			unbind()
			switch {
			case tt.wantErr == nil && (err != nil || len(data) != tt.wantLen):
				t.Fatalf("DownloadFile = %d bytes, %v; want %d bytes", len(data), err, tt.wantLen)
			case tt.wantErr != nil && !tt.wantErr(err):
				t.Fatalf("DownloadFile error = %v", err)
			}
			if got := calls.Load(); got != tt.wantCalls {
				t.Errorf("%d requests, want %d", got, tt.wantCalls)
			}
			if got := counter.read.Load(); tt.wantRead >= 0 && got != tt.wantRead {
				t.Errorf("read %d body bytes, want %d", got, tt.wantRead)
			}
		})
	}

	f := &httpFetcher{client: http.DefaultClient, log: slog.New(slog.DiscardHandler), attempts: 1}
	if _, err := f.DownloadFile(srv.URL+"/ok.json", maxLength, 0); err == nil {
		t.Errorf("an unbound fetcher fetched")
	}
}

func isLengthMismatch(err error) bool {
	_, ok := errors.AsType[*metadata.ErrDownloadLengthMismatch](err)
	return ok
}

func httpStatus(code int) func(error) bool {
	return func(err error) bool {
		e, ok := errors.AsType[*metadata.ErrDownloadHTTP](err)
		return ok && e.StatusCode == code
	}
}

func TestRoleFromURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://h/m/1.root.json":      "root",
		"http://h/m/timestamp.json":   "timestamp",
		"http://h/m/12.snapshot.json": "snapshot",
		"http://h/m/3.targets.json":   "targets",
		"http://h/m/2.a%2Fb.json":     "a/b",
		"http://h/m/other":            "",
	} {
		if got := roleFromURL(in); got != want {
			t.Errorf("roleFromURL(%q) = %q, want %q", in, got, want)
		}
	}
}
