package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/dropless/dropless/pkg/agentapi"
	"github.com/dropless/dropless/pkg/protocol"
)

// fleetAgent is what the fleet scenario asks of a simulated agent's
// client: *agentapi.Client (the agent's own) or *leanAgent.
type fleetAgent interface {
	Checkin(ctx context.Context, req protocol.CheckinRequest, wait time.Duration) (protocol.CheckinResponse, error)
	SendEvents(ctx context.Context, events []protocol.Event) (protocol.EventsResponse, error)
}

// leanAgent is a simulated agent's client that costs the load generator
// less than the agent's own (pkg/agentapi over net/http's Transport):
// one connection it owns, written and read by the agent's goroutine
// alone, where the Transport adds a read and a write goroutine and 8 KiB
// of buffers to each connection. 100,000 agents on the server's two
// cores took as much CPU in the load generator as in the six replicas
// (docs/performance.md), CPU real agents on their own machines do not
// take from the server.
//
// It speaks the same requests as pkg/agentapi: POST with the credential
// as a bearer token and a JSON body, the check-in's ?wait=, one request
// on the connection at a time (HTTP/1.1 keep-alive); the same errors
// (*agentapi.Error for an error answer, agentapi.ErrTimeout for none in
// time, the same deadlines); and, as agentapi marks its calls
// idempotent, one that failed before any answer on a kept-alive
// connection is sent again on a new one, as net/http's Transport does.
// It is not safe for concurrent use: one agent, one goroutine.
type leanAgent struct {
	ctx  context.Context // ends the agent: its connection is closed
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
	addr string // host:port
	head []byte // "Host: …\r\nAuthorization: Bearer …\r\n…"
	// timeout bounds events; grace is added to a check-in's wait (the
	// agent's defaults, agentapi.DefaultTimeout and DefaultCheckinGrace).
	timeout, grace time.Duration

	conn   net.Conn
	br     *bufio.Reader
	unhook func() bool // stops closing conn when ctx ends
	used   bool        // conn has carried an answer: it was kept alive
	reused bool        // the last exchange went on a kept-alive connection
}

// newLeanAgent returns the client of the agent with credential cred on
// server (http://host:port), dialing with dial; ctx ends it.
func newLeanAgent(ctx context.Context, server, cred string, dial func(ctx context.Context, network, addr string) (net.Conn, error)) (*leanAgent, error) {
	u, err := url.Parse(server)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("lean agent: %q is not an http://host:port URL", server)
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	head := "Host: " + u.Host + "\r\nAuthorization: Bearer " + cred + "\r\nContent-Type: application/json\r\nUser-Agent: dropless-loadgen\r\n"
	return &leanAgent{ctx: ctx, dial: dial, addr: addr, head: []byte(head), timeout: agentapi.DefaultTimeout, grace: agentapi.DefaultCheckinGrace}, nil
}

// Checkin is agentapi.Client.Checkin: with wait > 0 the server holds the
// call until an assignment or wait; cut off after wait plus the grace.
func (a *leanAgent) Checkin(ctx context.Context, req protocol.CheckinRequest, wait time.Duration) (protocol.CheckinResponse, error) {
	var out protocol.CheckinResponse
	path := protocol.APIVersion + "/agent/checkin"
	if wait > 0 {
		path += "?wait=" + strconv.Itoa(int(wait/time.Second))
	}
	if err := a.post(ctx, path, req, &out, wait+a.grace); err != nil {
		return out, fmt.Errorf("check in: %w", err)
	}
	return out, nil
}

// SendEvents is agentapi.Client.SendEvents.
func (a *leanAgent) SendEvents(ctx context.Context, events []protocol.Event) (protocol.EventsResponse, error) {
	var out protocol.EventsResponse
	if err := a.post(ctx, protocol.APIVersion+"/agent/events", protocol.EventsRequest{Events: events}, &out, a.timeout); err != nil {
		return out, fmt.Errorf("send events: %w", err)
	}
	return out, nil
}

// post sends one request and decodes its answer into out, all within
// timeout. ctx must be the agent's own (a.ctx) or one it outlives.
func (a *leanAgent) post(ctx context.Context, path string, in, out any, timeout time.Duration) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	msg := make([]byte, 0, 64+len(path)+len(a.head)+len(body))
	msg = append(msg, "POST "...)
	msg = append(msg, path...)
	msg = append(msg, " HTTP/1.1\r\n"...)
	msg = append(msg, a.head...)
	msg = append(msg, "Content-Length: "...)
	msg = strconv.AppendInt(msg, int64(len(body)), 10)
	msg = append(msg, "\r\n\r\n"...)
	msg = append(msg, body...)
	start := time.Now()
	deadline := start.Add(timeout)
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		err := a.exchange(msg, deadline, out)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("%w: no complete answer within %s", agentapi.ErrTimeout, timeout)
		}
		var retry errStale
		if attempt == 0 && errors.As(err, &retry) {
			continue // the server closed the kept-alive connection: once more on a new one
		}
		conn := "a new connection"
		if a.reused {
			conn = "a kept-alive connection"
		}
		return fmt.Errorf("%w (%s after the call began, on %s)", err, time.Since(start).Round(time.Millisecond), conn)
	}
}

// errStale is a kept-alive connection that failed before any byte of an
// answer: the server closed it (idle, restarting) as the request went out.
type errStale struct{ err error }

func (e errStale) Error() string { return e.err.Error() }
func (e errStale) Unwrap() error { return e.err }

// exchange writes msg on the agent's connection (dialed if it has none)
// and reads the answer into out, by deadline. On any error the connection
// is closed.
func (a *leanAgent) exchange(msg []byte, deadline time.Time, out any) error {
	if a.conn == nil {
		dctx, cancel := context.WithDeadline(a.ctx, deadline)
		c, err := a.dial(dctx, "tcp", a.addr)
		cancel()
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				err = os.ErrDeadlineExceeded
			}
			return err
		}
		a.conn, a.used = c, false
		if a.br == nil {
			a.br = bufio.NewReaderSize(c, 1024)
		} else {
			a.br.Reset(c)
		}
		a.unhook = context.AfterFunc(a.ctx, func() { c.Close() })
	}
	reused := a.used
	a.reused = reused
	a.conn.SetDeadline(deadline)
	if _, err := a.conn.Write(msg); err != nil {
		return a.drop(err, reused)
	}
	// The first byte of the answer, apart: a kept-alive connection the
	// server had closed fails here, and the request may go again.
	if _, err := a.br.Peek(1); err != nil {
		return a.drop(err, reused)
	}
	resp, err := http.ReadResponse(a.br, nil)
	if err != nil {
		return a.drop(err, false)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	resp.Body.Close()
	if err != nil {
		return a.drop(err, false)
	}
	if resp.Close {
		a.drop(nil, false)
	} else {
		a.used = true
	}
	if resp.StatusCode >= 300 {
		var er protocol.ErrorResponse
		if json.Unmarshal(b, &er) != nil || er.Error.Message == "" {
			er.Error.Message = resp.Status
		}
		return &agentapi.Error{Status: resp.StatusCode, Code: er.Error.Code, Message: er.Error.Message}
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(b, out)
}

// drop closes the agent's connection after err (nil: the server asked
// for it) and returns err, marked errStale when the connection had been
// kept alive and failed before any answer (EOF, reset, broken pipe).
func (a *leanAgent) drop(err error, reused bool) error {
	if a.conn != nil {
		a.unhook()
		a.conn.Close()
		a.conn = nil
	}
	if reused && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)) {
		return errStale{err}
	}
	return err
}
