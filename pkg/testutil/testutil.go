// Package testutil holds what the tests of many packages need: a logger
// that writes through t.Log (and keeps what it wrote, for tests that
// assert on the log), and a free loopback port. It is imported by tests
// only (repo_test.go checks).
package testutil

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// Log is a test's log: what its Logger writes goes to t.Log, line by
// line, and is kept for String. Records written after the test ended (a
// child's output still being read, a library that kept the logger) are
// kept but not passed to t.Log, which would panic.
type Log struct {
	t    testing.TB
	mu   sync.Mutex
	done bool
	all  strings.Builder
	log  *slog.Logger
}

// NewLog returns a Log of records at level and above.
func NewLog(t testing.TB, level slog.Leveler) *Log {
	l := &Log{t: t}
	l.log = slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: level}))
	t.Cleanup(func() { l.mu.Lock(); l.done = true; l.mu.Unlock() })
	return l
}

// Logger returns the logger that writes to l.
func (l *Log) Logger() *slog.Logger { return l.log }

// Write implements io.Writer for the handler: one record per call.
func (l *Log) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.done {
		l.t.Log(strings.TrimRight(string(p), "\n"))
	}
	l.all.Write(p)
	return len(p), nil
}

// String returns everything written so far, in slog's text format.
func (l *Log) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.all.String()
}

// Lines returns the records written so far whose text contains s.
func (l *Log) Lines(s string) []string {
	var out []string
	for _, line := range strings.Split(l.String(), "\n") {
		if line != "" && strings.Contains(line, s) {
			out = append(out, line)
		}
	}
	return out
}

// Logger returns a logger that writes through t.Log at Debug and above.
func Logger(t testing.TB) *slog.Logger { return NewLog(t, slog.LevelDebug).Logger() }

// FreePort returns a loopback TCP port that was free a moment ago, for a
// server a test starts later (an app the agent launches).
//
// It is taken below the kernel's ephemeral range (32768-60999 on Linux):
// a port from there (what listening on port 0 gives) can be taken, before
// the server binds it, by any outgoing connection of the tests running in
// parallel, and the server then fails to start. Below that range only
// another FreePort can take it: each process walks the range from a
// random start.
func FreePort(t testing.TB) int {
	t.Helper()
	for range 100 {
		port := freePortLow + int(freePortNext.Add(1)%freePortSpan)
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			ln.Close()
			return port
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// FreePort's range: [freePortLow, freePortLow+freePortSpan).
const (
	freePortLow  = 20000
	freePortSpan = 12000
)

var freePortNext = func() *atomic.Uint64 {
	var n atomic.Uint64
	n.Store(rand.Uint64())
	return &n
}()
