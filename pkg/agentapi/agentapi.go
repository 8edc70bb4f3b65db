// Package agentapi is the client side of the agent API (/api/v1/agent/...):
// enroll, check in (long-poll) and send job events. The agent uses it, and
// so does the load generator that simulates thousands of agents.
package agentapi

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/pkg/tlstrust"
)

// Default deadlines of one request, from the moment it is sent to the end
// of its answer. A server or proxy that holds a request open longer is cut
// off, so one hung response never stops the agent.
const (
	// DefaultTimeout bounds enroll and events.
	DefaultTimeout = 60 * time.Second
	// DefaultCheckinGrace is added to a check-in's long-poll wait: the
	// server answers after wait at the latest.
	DefaultCheckinGrace = 30 * time.Second
)

// Client calls one update server as one agent. Its methods are safe for
// concurrent use: the agent checks in from one goroutine and sends events
// from another.
type Client struct {
	BaseURL string // e.g. http://127.0.0.1:8080
	// Credential is the agent's own credential. Set it before the client
	// is shared between goroutines; afterwards use SetCredential and
	// CurrentCredential (Enroll sets it through mu).
	Credential string
	HTTP       *http.Client
	// Timeout bounds enroll and events requests; 0 means DefaultTimeout.
	Timeout time.Duration
	// CheckinGrace is how long past its long-poll wait a check-in may
	// take; 0 means DefaultCheckinGrace.
	CheckinGrace time.Duration

	mu sync.Mutex // guards Credential, servers and cur once the client is shared
	// servers are the replicas to try in turn (SetServers); cur is the
	// one in use.
	servers []string
	cur     int
}

// SetServers gives the client several servers (replicas of one update
// server) instead of BaseURL: it sticks to one and, when a request to it
// gets no answer or a 5xx, moves on to the next for the following
// requests (the caller's backoff paces the retries). Set it before the
// client is shared.
func (c *Client) SetServers(urls []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.servers = nil
	for _, u := range urls {
		c.servers = append(c.servers, strings.TrimRight(u, "/"))
	}
	c.cur = 0
}

// Server is the server requests go to now.
func (c *Client) Server() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.servers) == 0 {
		return c.BaseURL
	}
	return c.servers[c.cur]
}

// Failover moves on to the next server if server is still the one in use
// (two requests failing at once move on once). It returns the server in
// use afterwards.
func (c *Client) Failover(server string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.servers) == 0 {
		return c.BaseURL
	}
	if c.servers[c.cur] == strings.TrimRight(server, "/") {
		c.cur = (c.cur + 1) % len(c.servers)
	}
	return c.servers[c.cur]
}

// SetCredential replaces the credential the client sends ("" for none).
func (c *Client) SetCredential(cred string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.Credential = cred
}

// CurrentCredential returns the credential the client sends.
func (c *Client) CurrentCredential() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Credential
}

func (c *Client) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return DefaultTimeout
}

func (c *Client) checkinGrace() time.Duration {
	if c.CheckinGrace > 0 {
		return c.CheckinGrace
	}
	return DefaultCheckinGrace
}

// ErrTimeout is matched (errors.Is) by a request the server did not
// answer within its deadline.
var ErrTimeout = errors.New("the server did not answer in time")

// Option adjusts a Client made by New.
type Option func(*http.Transport)

// WithTLS makes the client verify an https server with cfg (e.g. the
// system's roots plus the agent's ca_file, from tlstrust.ClientConfig).
func WithTLS(cfg *tls.Config) Option {
	// A copy that offers HTTP/1.1 only: an HTTP/2 transport sharing cfg
	// (the TUF fetcher's) adds "h2" to its NextProtos, and this HTTP/1.1
	// transport would then offer h2 to the server and fail to speak it.
	return func(t *http.Transport) {
		c := cfg.Clone()
		c.NextProtos = []string{"http/1.1"}
		t.TLSClientConfig = c
	}
}

// New returns a client with a transport suited to long-polls. A server
// certificate that fails verification is an error that names the problem
// and says to set ca_file (see tlstrust.Explain).
func New(baseURL string, opts ...Option) *Client {
	tr := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     90 * time.Second,
	}
	for _, o := range opts {
		o(tr)
	}
	return &Client{
		BaseURL: strings.TrimRight(baseURL, "/"),
		HTTP:    &http.Client{Transport: tlstrust.Transport(tr, "the server", "set ca_file to the CA that signed it")},
	}
}

// Error is an error answer from the server.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("server answered %d: %s", e.Status, e.Message)
}

// IsUnauthorized reports whether err means the credential (or enroll token)
// was refused.
func IsUnauthorized(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == http.StatusUnauthorized
}

// post sends one request, answered within timeout or cut off. The
// deadline covers the whole exchange, the body of the answer included.
func (c *Client) post(ctx context.Context, path string, in, out any, bearer string, timeout time.Duration) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	reqCtx, cancel := context.WithTimeoutCause(ctx, timeout, ErrTimeout)
	defer cancel()
	err = c.do(reqCtx, path, body, out, bearer)
	if err != nil && ctx.Err() == nil && errors.Is(context.Cause(reqCtx), ErrTimeout) {
		return fmt.Errorf("%w: no complete answer within %s (a proxy or the network holds the request)", ErrTimeout, timeout)
	}
	return err
}

func (c *Client) do(ctx context.Context, path string, body []byte, out any, bearer string) error {
	server := c.Server()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, server+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
		// The agent's calls (check-in, events, offline report) are safe
		// to repeat: the server keeps a job's result, each (job, seq)
		// event and each reported job once. Marked so (an empty
		// Idempotency-Key, not sent), Go's transport sends one again on a
		// new connection when the server (or a proxy) closed the kept-
		// alive connection it went out on: 100,000 agents connecting
		// to six replicas met ~570 of these (EOF, connection reset).
		// Enroll is not marked: a repeat would spend the token again.
		req.Header["Idempotency-Key"] = nil
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		if ctx.Err() == nil || errors.Is(context.Cause(ctx), ErrTimeout) {
			c.Failover(server) // no answer: the next server next time
		}
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 500 {
		c.Failover(server)
	}
	if resp.StatusCode >= 300 {
		var er protocol.ErrorResponse
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(b, &er) != nil || er.Error.Message == "" {
			er.Error.Message = resp.Status
		}
		return &Error{Status: resp.StatusCode, Code: er.Error.Code, Message: er.Error.Message}
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(out)
}

// Enroll exchanges an enroll token for the agent's credential and keeps it.
func (c *Client) Enroll(ctx context.Context, req protocol.EnrollRequest) (protocol.EnrollResponse, error) {
	var out protocol.EnrollResponse
	if err := c.post(ctx, protocol.APIVersion+"/agent/enroll", req, &out, "", c.timeout()); err != nil {
		return out, fmt.Errorf("enroll: %w", err)
	}
	c.SetCredential(out.Credential)
	return out, nil
}

// Checkin reports the agent's state and returns its assignment. With wait
// > 0 the server holds the call until there is a new assignment or wait
// passes. The call is cut off when no answer came within wait plus
// CheckinGrace.
func (c *Client) Checkin(ctx context.Context, req protocol.CheckinRequest, wait time.Duration) (protocol.CheckinResponse, error) {
	var out protocol.CheckinResponse
	path := protocol.APIVersion + "/agent/checkin"
	if wait > 0 {
		path += "?wait=" + strconv.Itoa(int(wait/time.Second))
	}
	if err := c.post(ctx, path, req, &out, c.CurrentCredential(), wait+c.checkinGrace()); err != nil {
		return out, fmt.Errorf("check in: %w", err)
	}
	return out, nil
}

// SendEvents delivers job events; the server stores each (job, seq) once.
func (c *Client) SendEvents(ctx context.Context, events []protocol.Event) (protocol.EventsResponse, error) {
	var out protocol.EventsResponse
	if err := c.post(ctx, protocol.APIVersion+"/agent/events", protocol.EventsRequest{Events: events}, &out, c.CurrentCredential(), c.timeout()); err != nil {
		return out, fmt.Errorf("send events: %w", err)
	}
	return out, nil
}

// SendReport delivers the report of jobs the agent ran from an air-gap
// file (airgap.SignedReport, signed with the agent's credential); the
// server stores each job once.
func (c *Client) SendReport(ctx context.Context, report json.RawMessage) (protocol.ImportReportResponse, error) {
	var out protocol.ImportReportResponse
	if err := c.post(ctx, protocol.APIVersion+"/agent/offline-report", report, &out, c.CurrentCredential(), c.timeout()); err != nil {
		return out, fmt.Errorf("send offline report: %w", err)
	}
	return out, nil
}
