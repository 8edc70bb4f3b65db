package cli_test

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/dropless/dropless/updateserver/internal/daemon"
)

// TestSlowlorisClosed: a client that trickles its request headers is cut
// off at the header timeout instead of holding a connection forever.
func TestSlowlorisClosed(t *testing.T) {
	s := startServer(t, func(c *daemon.Config) { c.ReadHeaderTimeout = 300 * time.Millisecond })
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n"); err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() {
		_, err := io.ReadAll(conn) // returns when the server closes
		closed <- err
	}()
	// Trickle a header byte at a time; the server must hang up.
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; ; i++ {
		select {
		case <-closed:
			return
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("connection still open after %d header bytes", i)
		}
		if _, err := conn.Write([]byte("X")); err != nil {
			return // closed under us: also a hang-up
		}
	}
}

// TestOversizedBodyRefused: a JSON body over the limit is refused with 413
// without being read whole.
func TestOversizedBodyRefused(t *testing.T) {
	s := startServer(t)
	big := bytes.Repeat([]byte(" "), 7<<20)
	code, body := s.api("POST", "/api/v1/tokens", s.Admin, bytes.NewReader(append(append([]byte(`{"role":"viewer","name":"`), big...), []byte(`x"}`)...)))
	if code != http.StatusRequestEntityTooLarge || !strings.Contains(string(body), "larger than") {
		t.Fatalf("got %d %s, want 413", code, body)
	}
}
