package ui_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/daemon"
	"github.com/dropless/dropless/updateserver/internal/store"
	"github.com/dropless/dropless/updateserver/internal/store/storetest"
	"github.com/dropless/dropless/updateserver/internal/tufrepo"
)

// env is a real server (daemon: store, publisher, API and dashboard) on
// loopback, in a temporary data directory.
type env struct {
	t     testing.TB
	ctx   context.Context
	d     *daemon.Daemon
	url   string
	admin string // the admin token
}

func newEnv(t testing.TB) *env {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	cfg := daemon.Config{
		DataDir: dir, Listen: "127.0.0.1:0", MaxBundleSize: daemon.DefaultMaxBundleSize, Expiry: tufrepo.DefaultExpiry(),
		RefreshInterval: time.Hour, PollInterval: daemon.DefaultPollInterval, JobTimeout: daemon.DefaultJobTimeout,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if storetest.Postgres() { // make test-postgres: the dashboard on PostgreSQL too
		cfg.Store = storetest.Schema(t)
	}
	d, err := daemon.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := d.Serve(ctx); err != nil {
			t.Error(err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		d.Close()
	})
	b, err := os.ReadFile(filepath.Join(dir, daemon.AdminTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, ctx: context.Background(), d: d, url: "http://" + d.Addr(), admin: strings.TrimSpace(string(b))}
}

// token makes an operator token of a role and returns its secret.
func (e *env) token(name, role string) string {
	e.t.Helper()
	secret := store.NewSecret("dlo_")
	if _, err := e.d.Store.CreateToken(e.ctx, time.Now(), name, role, secret, "test"); err != nil {
		e.t.Fatal(err)
	}
	return secret
}

// enroll enrolls a site of product acme-erp and checks it in.
func (e *env) enroll(site, client string, c protocol.CheckinRequest) {
	e.t.Helper()
	now := time.Now()
	secret := "dle_" + site
	if _, err := e.d.Store.CreateEnrollToken(e.ctx, now, store.NewEnrollToken{Secret: secret, Client: client, ExpiresAt: now.Add(time.Hour), Uses: 1, By: "test"}); err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.d.Store.Enroll(e.ctx, now, secret, protocol.EnrollRequest{Site: site, Client: client, Product: "acme-erp"}, "dla_"+site); err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.d.Fleet.Checkin(e.ctx, site, c, 0); err != nil {
		e.t.Fatal(err)
	}
}

// publish records a release of acme-erp (its row, as publishing leaves
// it; the dashboard reads only rows).
func (e *env) publish(version string) {
	e.t.Helper()
	r := protocol.Release{Product: "acme-erp", Version: version, Target: "acme-erp/acme-erp-" + version + ".tar.gz", SHA256: strings.Repeat("0", 64), Length: 1,
		Notes: "notes of " + version, PublishedAt: time.Now(), PublishedBy: "test"}
	if err := e.d.Store.PublishRelease(e.ctx, store.Publish{Release: r, Audit: store.Audit{Actor: "test", Action: "release.publish"}}); err != nil {
		e.t.Fatal(err)
	}
}

// browser is a person's HTTP client: it keeps cookies and does not
// follow redirects, so that the test sees them.
type browser struct {
	e *env
	c *http.Client
}

func (e *env) browser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{e: e, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// signIn signs in with a token and fails the test unless it worked.
func (b *browser) signIn(token string) {
	b.e.t.Helper()
	resp, _ := b.post("/ui/signin", url.Values{"token": {token}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/" {
		b.e.t.Fatalf("sign in: %s, Location %q", resp.Status, resp.Header.Get("Location"))
	}
}

func (b *browser) get(path string) (*http.Response, string) {
	b.e.t.Helper()
	resp, err := b.c.Get(b.e.url + path)
	if err != nil {
		b.e.t.Fatal(err)
	}
	return resp, readBody(b.e.t, resp)
}

// page GETs a page and fails the test unless it answers 200.
func (b *browser) page(path string) string {
	b.e.t.Helper()
	resp, body := b.get(path)
	if resp.StatusCode != http.StatusOK {
		b.e.t.Fatalf("GET %s: %s\n%s", path, resp.Status, body)
	}
	return body
}

func (b *browser) post(path string, form url.Values, hdr ...string) (*http.Response, string) {
	b.e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, b.e.url+path, strings.NewReader(form.Encode()))
	if err != nil {
		b.e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.e.t.Fatal(err)
	}
	return resp, readBody(b.e.t, resp)
}

// csrf returns the CSRF token a signed-in page carries.
func (b *browser) csrf() string {
	b.e.t.Helper()
	body := b.page("/ui/")
	_, rest, ok := strings.Cut(body, `name="csrf" value="`)
	if !ok {
		b.e.t.Fatalf("no CSRF token in the page:\n%s", body)
	}
	v, _, _ := strings.Cut(rest, `"`)
	return v
}

func readBody(t testing.TB, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func wantIn(t testing.TB, body string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(body, w) {
			t.Errorf("the page lacks %q", w)
		}
	}
	if t.Failed() {
		t.Logf("page:\n%s", body)
	}
}

func wantNotIn(t testing.TB, body string, unwanted ...string) {
	t.Helper()
	for _, w := range unwanted {
		if strings.Contains(body, w) {
			t.Errorf("the page has %q", w)
		}
	}
	if t.Failed() {
		t.Logf("page:\n%s", body)
	}
}

func siteName(i int) string { return fmt.Sprintf("site-%05d", i) }
