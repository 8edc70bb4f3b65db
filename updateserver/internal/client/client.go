// Package client is the operator API's Go client, used by the updateserver
// CLI: it talks HTTP to a running server and turns its JSON errors into Go
// errors carrying the server's message.
package client

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
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/pkg/tlstrust"
)

// Client calls one update server.
type Client struct {
	BaseURL string
	Token   string
	HTTP    *http.Client
}

// New returns a client for the server at base. tlsConfig verifies an
// https server (nil: the system's roots).
func New(base, token string, tlsConfig *tls.Config) (*Client, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("server URL %q is not valid: use http://host:port or https://host", base)
	}
	return &Client{
		BaseURL: strings.TrimRight(base, "/"),
		Token:   token,
		// No overall timeout: uploads of several GB take their time. The
		// transport bounds connecting and waiting for headers.
		HTTP: &http.Client{Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: 10 * time.Minute,
			TLSClientConfig:       tlsConfig,
		}},
	}, nil
}

// APIError is an error answer from the server.
type APIError struct {
	Status  int
	Code    string
	Message string
}

func (e *APIError) Error() string { return e.Message }

// Do sends a request with body (an io.Reader is streamed, anything else
// JSON-encoded, nil is no body) and decodes a JSON answer into out.
func (c *Client) Do(ctx context.Context, method, path string, body any, out any) error {
	_, err := c.do(ctx, method, path, body, out)
	return err
}

// do is Do that also returns the answer's headers.
func (c *Client) do(ctx context.Context, method, path string, body any, out any) (http.Header, error) {
	var rd io.Reader
	ctype := ""
	length := int64(-1)
	switch b := body.(type) {
	case nil:
	case fileBody:
		// The *os.File itself, which the transport closes: only then does
		// it reach net's sendfile.
		rd, ctype, length = b.f, "application/gzip", b.size
	case io.Reader:
		rd, ctype = b, "application/gzip"
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return nil, err
		}
		rd, ctype = bytes.NewReader(j), "application/json"
	}
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, rd)
	if err != nil {
		return nil, err
	}
	if length >= 0 {
		req.ContentLength = length
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, c.transportError(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return resp.Header, decodeError(resp)
	}
	if out == nil {
		return resp.Header, nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(out); err != nil {
		return resp.Header, fmt.Errorf("the server's answer is not valid JSON: %w", err)
	}
	return resp.Header, nil
}

// Get fetches a raw path (such as a TUF file) and returns its body.
func (c *Client) Get(ctx context.Context, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.BaseURL+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, c.transportError(err)
	}
	return resp, nil
}

func (c *Client) transportError(err error) error {
	if errors.Is(err, context.Canceled) {
		return err
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("cannot reach the update server at %s: is it running? (set --server or UPDATESERVER_URL)", c.BaseURL)
	}
	if e, ok := errors.AsType[*tlstrust.Error](tlstrust.Explain(err, "the update server", caFileFix)); ok {
		return e
	}
	return fmt.Errorf("talking to the update server at %s: %w", c.BaseURL, err)
}

// caFileFix is what to do about a certificate signed by a CA the CLI does
// not trust.
const caFileFix = "pass --ca-file with the CA that signed it (or set UPDATESERVER_CA_FILE)"

func decodeError(resp *http.Response) error {
	var er protocol.ErrorResponse
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if json.Unmarshal(b, &er) == nil && er.Error.Message != "" {
		return &APIError{Status: resp.StatusCode, Code: er.Error.Code, Message: er.Error.Message}
	}
	if resp.StatusCode == http.StatusBadRequest && bytes.HasPrefix(b, []byte("Client sent an HTTP request to an HTTPS server")) {
		return &APIError{Status: resp.StatusCode, Message: "the update server speaks HTTPS: use https:// in --server (or UPDATESERVER_URL)"}
	}
	return &APIError{Status: resp.StatusCode, Message: fmt.Sprintf("the server answered %s", resp.Status)}
}

// CreateToken creates an operator token.
func (c *Client) CreateToken(ctx context.Context, req protocol.CreateTokenRequest) (protocol.CreateTokenResponse, error) {
	var out protocol.CreateTokenResponse
	err := c.Do(ctx, http.MethodPost, protocol.APIVersion+"/tokens", req, &out)
	return out, err
}

// Tokens lists operator tokens (never their secrets).
func (c *Client) Tokens(ctx context.Context) ([]protocol.TokenInfo, error) {
	var out []protocol.TokenInfo
	err := c.Do(ctx, http.MethodGet, protocol.APIVersion+"/tokens", nil, &out)
	return out, err
}

// RevokeToken revokes the live token named name.
func (c *Client) RevokeToken(ctx context.Context, name string) (protocol.RevokeTokenResponse, error) {
	var out protocol.RevokeTokenResponse
	err := c.Do(ctx, http.MethodPost, protocol.APIVersion+"/tokens/"+url.PathEscape(name)+"/revoke", nil, &out)
	return out, err
}

// Upload streams a bundle to the server's staging area.
func (c *Client) Upload(ctx context.Context, r io.Reader) (protocol.Upload, error) {
	var out protocol.Upload
	err := c.Do(ctx, http.MethodPost, protocol.APIVersion+"/uploads", r, &out)
	return out, err
}

// UploadFile streams the bundle file name, of size bytes, to the server's
// staging area. The body is the file itself with its length (not chunks),
// so that over plain HTTP the transport hands it to the kernel (sendfile)
// instead of copying it through the process. The file is opened here, and
// closed by the transport.
func (c *Client) UploadFile(ctx context.Context, name string, size int64) (protocol.Upload, error) {
	f, err := os.Open(name)
	if err != nil {
		return protocol.Upload{}, err
	}
	var out protocol.Upload
	err = c.Do(ctx, http.MethodPost, protocol.APIVersion+"/uploads", fileBody{f, size}, &out)
	return out, err
}

// fileBody is a request body read from a file of known size.
type fileBody struct {
	f    *os.File
	size int64
}

// Publish publishes a staged upload.
func (c *Client) Publish(ctx context.Context, req protocol.PublishRequest) (protocol.Release, error) {
	var out protocol.Release
	err := c.Do(ctx, http.MethodPost, protocol.APIVersion+"/releases", req, &out)
	return out, err
}

// RepoTargets returns the current signed targets metadata.
func (c *Client) RepoTargets(ctx context.Context) ([]byte, error) {
	var out protocol.RepoTargets
	err := c.Do(ctx, http.MethodGet, protocol.APIVersion+"/repo/targets", nil, &out)
	return out.Targets, err
}

// Releases lists releases.
func (c *Client) Releases(ctx context.Context, product, channel string) ([]protocol.Release, error) {
	q := url.Values{}
	if product != "" {
		q.Set("product", product)
	}
	if channel != "" {
		q.Set("channel", channel)
	}
	var out []protocol.Release
	err := c.Do(ctx, http.MethodGet, protocol.APIVersion+"/releases?"+q.Encode(), nil, &out)
	return out, err
}

func releasePath(product, version, verb string) string {
	return protocol.APIVersion + "/releases/" + url.PathEscape(product) + "/" + url.PathEscape(version) + "/" + verb
}

// Release shows one release.
func (c *Client) Release(ctx context.Context, product, version string) (protocol.Release, error) {
	var out protocol.Release
	err := c.Do(ctx, http.MethodGet, protocol.APIVersion+"/releases/"+url.PathEscape(product)+"/"+url.PathEscape(version), nil, &out)
	return out, err
}

// IsNotFound reports whether err is the server's 404.
func IsNotFound(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status == http.StatusNotFound
}

// Promote puts a release on a channel.
func (c *Client) Promote(ctx context.Context, product, version, channel string) (protocol.Release, error) {
	var out protocol.Release
	err := c.Do(ctx, http.MethodPost, releasePath(product, version, "promote"), protocol.PromoteRequest{Channel: channel}, &out)
	return out, err
}

// Yank withdraws a release.
func (c *Client) Yank(ctx context.Context, product, version, reason string) (protocol.Release, error) {
	var out protocol.Release
	err := c.Do(ctx, http.MethodPost, releasePath(product, version, "yank"), protocol.YankRequest{Reason: reason}, &out)
	return out, err
}

// CreateEnrollToken creates an enroll token for a client's agents.
func (c *Client) CreateEnrollToken(ctx context.Context, req protocol.CreateEnrollTokenRequest) (protocol.CreateEnrollTokenResponse, error) {
	var out protocol.CreateEnrollTokenResponse
	err := c.Do(ctx, http.MethodPost, protocol.APIVersion+"/enroll-tokens", req, &out)
	return out, err
}

// EnrollTokens lists enroll tokens (never their secrets).
func (c *Client) EnrollTokens(ctx context.Context) ([]protocol.EnrollTokenInfo, error) {
	var out []protocol.EnrollTokenInfo
	err := c.Do(ctx, http.MethodGet, protocol.APIVersion+"/enroll-tokens", nil, &out)
	return out, err
}

// RevokeEnrollToken revokes enroll token id.
func (c *Client) RevokeEnrollToken(ctx context.Context, id int64) error {
	return c.Do(ctx, http.MethodPost, fmt.Sprintf("%s/enroll-tokens/%d/revoke", protocol.APIVersion, id), nil, nil)
}

// Sites lists sites.
func (c *Client) Sites(ctx context.Context, client, product string) ([]protocol.Site, error) {
	q := url.Values{}
	if client != "" {
		q.Set("client", client)
	}
	if product != "" {
		q.Set("product", product)
	}
	var out []protocol.Site
	err := c.Do(ctx, http.MethodGet, protocol.APIVersion+"/sites?"+q.Encode(), nil, &out)
	return out, err
}

// Site shows one site.
func (c *Client) Site(ctx context.Context, site string) (protocol.Site, error) {
	var out protocol.Site
	err := c.Do(ctx, http.MethodGet, protocol.APIVersion+"/sites/"+url.PathEscape(site), nil, &out)
	return out, err
}

// History lists one page of a site's jobs, newest first: at most limit
// (0: the server's default) older than job before ("" for the newest).
// next is the cursor of the page after it, "" on the last page.
func (c *Client) History(ctx context.Context, site, before string, limit int) (jobs []protocol.Job, next string, err error) {
	q := url.Values{}
	if before != "" {
		q.Set("before", before)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	h, err := c.do(ctx, http.MethodGet, protocol.APIVersion+"/sites/"+url.PathEscape(site)+"/history?"+q.Encode(), nil, &jobs)
	if err != nil {
		return nil, "", err
	}
	return jobs, nextCursor(h), nil
}

// nextCursor reads the before= of a Link header's rel="next" URL.
func nextCursor(h http.Header) string {
	for _, link := range h.Values("Link") {
		for part := range strings.SplitSeq(link, ",") {
			target, params, ok := strings.Cut(strings.TrimSpace(part), ";")
			if !ok || !strings.Contains(params, `rel="next"`) {
				continue
			}
			u, err := url.Parse(strings.Trim(strings.TrimSpace(target), "<>"))
			if err == nil {
				return u.Query().Get("before")
			}
		}
	}
	return ""
}

// Upgrade assigns a version to a site or a client.
func (c *Client) Upgrade(ctx context.Context, req protocol.UpgradeRequest) (protocol.UpgradeResponse, error) {
	var out protocol.UpgradeResponse
	err := c.Do(ctx, http.MethodPost, protocol.APIVersion+"/upgrades", req, &out)
	return out, err
}

// AuditQuery selects audit log entries; zero fields select everything.
type AuditQuery struct {
	Since  string // a duration back from now (24h, 7d) or an RFC 3339 time
	Actor  string // an operator token's name, or the whole actor of anything else
	Before int64  // only entries older than the entry with this ID
	Limit  int    // at most this many per page: 0 is the server's default, at most protocol.AuditLimitMax
}

// AuditLog returns one page of the audit log, newest first. The next page
// is the same query with Before set to the last entry's ID; a page shorter
// than the limit is the last.
func (c *Client) AuditLog(ctx context.Context, q AuditQuery) ([]protocol.AuditEntry, error) {
	v := url.Values{}
	if q.Since != "" {
		v.Set("since", q.Since)
	}
	if q.Actor != "" {
		v.Set("actor", q.Actor)
	}
	if q.Before > 0 {
		v.Set("before", strconv.FormatInt(q.Before, 10))
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	var out []protocol.AuditEntry
	err := c.Do(ctx, http.MethodGet, protocol.APIVersion+"/audit?"+v.Encode(), nil, &out)
	return out, err
}

// SetWindow stores a site's or a client's maintenance window.
func (c *Client) SetWindow(ctx context.Context, req protocol.WindowRequest) (protocol.Window, error) {
	var out protocol.Window
	err := c.Do(ctx, http.MethodPut, protocol.APIVersion+"/windows", req, &out)
	return out, err
}

// ClearWindow removes a site's or a client's window (give one of them).
func (c *Client) ClearWindow(ctx context.Context, site, client string) error {
	return c.Do(ctx, http.MethodDelete, protocol.APIVersion+"/windows?"+scopeQuery(site, client), nil, nil)
}

// scopeQuery is the query naming a site or a client (give one of them).
func scopeQuery(site, client string) string {
	q := url.Values{}
	if site != "" {
		q.Set("site", site)
	}
	if client != "" {
		q.Set("client", client)
	}
	return q.Encode()
}

// Follow makes a site, or every site of a client, follow a channel.
func (c *Client) Follow(ctx context.Context, req protocol.FollowRequest) (protocol.FollowResponse, error) {
	var out protocol.FollowResponse
	err := c.Do(ctx, http.MethodPut, protocol.APIVersion+"/follows", req, &out)
	return out, err
}

// Unfollow makes a site, or every site of a client, follow no channel.
func (c *Client) Unfollow(ctx context.Context, site, client string) (protocol.FollowResponse, error) {
	var out protocol.FollowResponse
	err := c.Do(ctx, http.MethodDelete, protocol.APIVersion+"/follows?"+scopeQuery(site, client), nil, &out)
	return out, err
}

// SiteWindow shows a site's window as of now.
func (c *Client) SiteWindow(ctx context.Context, site string) (protocol.SiteWindow, error) {
	var out protocol.SiteWindow
	err := c.Do(ctx, http.MethodGet, protocol.APIVersion+"/sites/"+url.PathEscape(site)+"/window", nil, &out)
	return out, err
}

// CreateFreeze creates a freeze.
func (c *Client) CreateFreeze(ctx context.Context, req protocol.FreezeRequest) (protocol.Freeze, error) {
	var out protocol.Freeze
	err := c.Do(ctx, http.MethodPost, protocol.APIVersion+"/freezes", req, &out)
	return out, err
}

// Freezes lists the freezes not yet ended.
func (c *Client) Freezes(ctx context.Context) ([]protocol.Freeze, error) {
	var out []protocol.Freeze
	err := c.Do(ctx, http.MethodGet, protocol.APIVersion+"/freezes", nil, &out)
	return out, err
}

// DeleteFreeze deletes freeze id.
func (c *Client) DeleteFreeze(ctx context.Context, id int64) error {
	return c.Do(ctx, http.MethodDelete, fmt.Sprintf("%s/freezes/%d", protocol.APIVersion, id), nil, nil)
}

// ImportReport imports the report of an air-gapped site's offline jobs
// (the file updateagent apply-offline --report wrote).
func (c *Client) ImportReport(ctx context.Context, report json.RawMessage) (protocol.ImportReportResponse, error) {
	var out protocol.ImportReportResponse
	err := c.Do(ctx, http.MethodPost, protocol.APIVersion+"/offline-reports", report, &out)
	return out, err
}
