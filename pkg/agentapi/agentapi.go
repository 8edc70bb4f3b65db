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
	"time"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/pkg/tlstrust"
)

// Client calls one update server as one agent.
type Client struct {
	BaseURL    string // e.g. http://127.0.0.1:8080
	Credential string // the agent's own credential, after Enroll
	HTTP       *http.Client
}

// Option adjusts a Client made by New.
type Option func(*http.Transport)

// WithTLS makes the client verify an https server with cfg (e.g. the
// system's roots plus the agent's ca_file, from tlstrust.ClientConfig).
func WithTLS(cfg *tls.Config) Option {
	return func(t *http.Transport) { t.TLSClientConfig = cfg }
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

func (c *Client) post(ctx context.Context, path string, in, out any, bearer string) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.BaseURL+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
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
	if err := c.post(ctx, protocol.APIVersion+"/agent/enroll", req, &out, ""); err != nil {
		return out, fmt.Errorf("enroll: %w", err)
	}
	c.Credential = out.Credential
	return out, nil
}

// Checkin reports the agent's state and returns its assignment. With wait
// > 0 the server holds the call until there is a new assignment or wait
// passes.
func (c *Client) Checkin(ctx context.Context, req protocol.CheckinRequest, wait time.Duration) (protocol.CheckinResponse, error) {
	var out protocol.CheckinResponse
	path := protocol.APIVersion + "/agent/checkin"
	if wait > 0 {
		path += "?wait=" + strconv.Itoa(int(wait/time.Second))
	}
	if err := c.post(ctx, path, req, &out, c.Credential); err != nil {
		return out, fmt.Errorf("check in: %w", err)
	}
	return out, nil
}

// SendEvents delivers job events; the server stores each (job, seq) once.
func (c *Client) SendEvents(ctx context.Context, events []protocol.Event) (protocol.EventsResponse, error) {
	var out protocol.EventsResponse
	if err := c.post(ctx, protocol.APIVersion+"/agent/events", protocol.EventsRequest{Events: events}, &out, c.Credential); err != nil {
		return out, fmt.Errorf("send events: %w", err)
	}
	return out, nil
}
