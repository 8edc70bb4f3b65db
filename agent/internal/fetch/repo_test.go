package fetch

// The fetch tests' TUF repository is agent/internal/tuftest's; testRepo
// adds the clients these tests make of it.

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dropless/dropless/agent/internal/tuftest"
	"github.com/dropless/dropless/pkg/testutil"
)

type testRepo struct {
	*tuftest.Repo
	t *testing.T
}

// newTestRepo publishes version 1 of every role: one key per role, no
// targets yet.
func newTestRepo(t *testing.T) *testRepo { return &testRepo{Repo: tuftest.New(t), t: t} }

func (r *testRepo) config(dir string) Config {
	return Config{
		MetadataURL: r.MetadataURL(),
		TargetsURL:  r.TargetsURL() + "/",
		MetadataDir: dir,
		RootSHA256:  sha256Hex(r.RootV1()),
		Log:         testLogger(r.t),
	}
}

// client returns a Client on r with short retry pauses, bootstrapped and
// refreshed unless told otherwise.
func (r *testRepo) client(dir string, edit func(*Config)) *Client {
	r.t.Helper()
	cfg := r.config(dir)
	if edit != nil {
		edit(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		r.t.Fatal(err)
	}
	c.backoff = 5 * time.Millisecond
	c.stallTimeout = 5 * time.Second
	return c
}

func (r *testRepo) mustRefresh(c *Client) {
	r.t.Helper()
	ctx := context.Background()
	if err := c.Bootstrap(ctx); err != nil {
		r.t.Fatalf("Bootstrap: %v", err)
	}
	if err := c.Refresh(ctx); err != nil {
		r.t.Fatalf("Refresh: %v", err)
	}
}

// testLogger logs through t at Info and above. go-tuf's messages (Debug,
// through the package's one adapter) are dropped.
func testLogger(t *testing.T) *slog.Logger { return testutil.NewLog(t, slog.LevelInfo).Logger() }

// countingTransport counts the response body bytes the client read.
type countingTransport struct {
	base http.RoundTripper
	read atomic.Int64
}

func (c *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	resp.Body = &countingBody{ReadCloser: resp.Body, n: &c.read}
	return resp, nil
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

func newCountingClient() (*http.Client, *countingTransport) {
	ct := &countingTransport{base: http.DefaultTransport.(*http.Transport).Clone()}
	return &http.Client{Transport: ct}, ct
}
