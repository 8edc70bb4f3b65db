// Package spectest checks HTTP traffic against the server's API
// description (/api/v1/openapi.json) in tests: every request a test makes
// and every answer the server gives must be what the description says.
// Test code only (TestTestHelpersOnlyInTests checks it).
package spectest

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
)

// maxChecked bounds the bodies checked; bigger ones (bundles) are passed
// through unread.
const maxChecked = 4 << 20

// Wrap returns a wrapper for the server's handler that fails tb for every
// answer the description spec (JSON) does not admit, and for every request
// it does not admit (an undescribed path, a bad parameter or body) that
// the server did not refuse with a 4xx or 5xx.
func Wrap(tb testing.TB, spec []byte) func(http.Handler) http.Handler {
	tb.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(spec)
	if err != nil {
		tb.Fatalf("load the API description: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		tb.Fatalf("the API description is not valid OpenAPI: %v", err)
	}
	router, err := legacy.NewRouter(doc)
	if err != nil {
		tb.Fatalf("route the API description: %v", err)
	}
	var mu sync.Mutex
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		tb.Errorf("API description: "+format, args...)
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			check(router, fail, next, w, r)
		})
	}
}

func check(router routers.Router, fail func(string, ...any), next http.Handler, w http.ResponseWriter, r *http.Request) {
	rec := &recorder{ResponseWriter: w}
	route, params, err := router.FindRoute(r)
	if err != nil {
		// Not described: the server must refuse it too (tests send such
		// requests on purpose). Target paths hold slashes, which OpenAPI
		// path parameters cannot. ServeMux redirects an unclean path
		// (/tuf/metadata/../x) to its clean form, which is refused then.
		next.ServeHTTP(rec, r)
		if rec.status < 300 && !strings.HasPrefix(r.URL.Path, "/tuf/targets/") {
			fail("%s %s: %v, but the server answered %d", r.Method, r.URL.Path, err, rec.status)
		}
		return
	}
	in := &openapi3filter.RequestValidationInput{
		Request: r, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true},
	}
	var reqErr error
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") && r.ContentLength >= 0 && r.ContentLength <= maxChecked {
		body, err := io.ReadAll(io.LimitReader(r.Body, maxChecked+1))
		if err == nil {
			r.Body = io.NopCloser(bytes.NewReader(body))
			reqErr = openapi3filter.ValidateRequest(r.Context(), in)
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
	} else {
		in.Options.ExcludeRequestBody = true
		reqErr = openapi3filter.ValidateRequest(r.Context(), in)
	}
	next.ServeHTTP(rec, r)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	// A request the description refuses (tests send bad ones on purpose)
	// must be refused by the server too.
	if reqErr != nil && rec.status < 400 {
		fail("request %s %s: %v, but the server answered %d", r.Method, r.URL.Path, reqErr, rec.status)
	}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: rec.status, Header: w.Header(),
		Body:    io.NopCloser(bytes.NewReader(rec.body.Bytes())),
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	if rec.truncated || !strings.HasPrefix(w.Header().Get("Content-Type"), "application/json") ||
		rec.status == http.StatusNoContent || rec.status == http.StatusNotModified {
		out.Options.ExcludeResponseBody = true
	}
	if err := openapi3filter.ValidateResponse(r.Context(), out); err != nil {
		fail("answer to %s %s (%d): %v", r.Method, r.URL.Path, rec.status, err)
	}
}

// recorder passes the answer through and keeps a copy of its first
// maxChecked bytes.
type recorder struct {
	http.ResponseWriter
	status    int
	body      bytes.Buffer
	truncated bool
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	if r.body.Len()+len(b) <= maxChecked {
		r.body.Write(b)
	} else {
		r.truncated = true
	}
	return r.ResponseWriter.Write(b)
}

// HijackedAnswer records an answer the handler wrote on a connection it
// hijacked (its headers are in the writer's Header).
func (r *recorder) HijackedAnswer(code int, body []byte) {
	r.status = code
	r.body.Reset()
	r.body.Write(body[:min(len(body), maxChecked)])
	r.truncated = len(body) > maxChecked
}

// Unwrap lets http.ResponseController reach the real writer (deadlines,
// flushes).
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
