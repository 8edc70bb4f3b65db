package api_test

import (
	"bytes"
	"compress/gzip"
	"io"
	"testing"

	"github.com/dropless/dropless/pkg/protocol"
)

// TestProfilesOnlyForAdmins: an admin reads the server's heap profile and
// goroutine dump (for go tool pprof); a support token is refused, as is
// no token, and an unknown profile says which exist.
func TestProfilesOnlyForAdmins(t *testing.T) {
	s := startHTTP(t)
	code, body, _ := s.call(t, "POST", "/api/v1/tokens", s.Admin, `{"role":"support","name":"desk"}`)
	if code != 201 {
		t.Fatalf("token create: %d %s", code, body)
	}
	var support protocol.CreateTokenResponse
	jsonUnmarshal(t, body, &support)

	code, body, _ = s.call(t, "GET", "/api/v1/debug/pprof/heap", s.Admin, "")
	if code != 200 {
		t.Fatalf("admin's heap profile: %d %s", code, body)
	}
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("the heap profile is not a gzip'd protobuf: %v", err)
	}
	if b, err := io.ReadAll(zr); err != nil || len(b) == 0 {
		t.Fatalf("the heap profile is empty or cut: %d bytes, %v", len(b), err)
	}
	code, body, _ = s.call(t, "GET", "/api/v1/debug/pprof/goroutine?debug=1", s.Admin, "")
	if code != 200 || !bytes.Contains(body, []byte("goroutine profile:")) {
		t.Fatalf("admin's goroutine dump: %d %.200s", code, body)
	}
	if code, body, _ = s.call(t, "GET", "/api/v1/debug/pprof/heap", support.Token, ""); code != 403 || !bytes.Contains(body, []byte("admin")) {
		t.Fatalf("a support token's heap profile: %d %s; want 403 saying it needs admin", code, body)
	}
	if code, _, _ = s.call(t, "GET", "/api/v1/debug/pprof/goroutine", "", ""); code != 401 {
		t.Fatalf("no token: %d; want 401", code)
	}
	if code, body, _ = s.call(t, "GET", "/api/v1/debug/pprof/nosuch", s.Admin, ""); code != 404 || !bytes.Contains(body, []byte("goroutine")) {
		t.Fatalf("an unknown profile: %d %s; want 404 naming the profiles", code, body)
	}
}
