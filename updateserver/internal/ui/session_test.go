package ui_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dropless/dropless/updateserver/internal/ui"
)

// TestSessionOnTLSAndItsExpiry runs a dashboard of its own, with a clock
// the test moves, behind HTTPS.
func TestSessionOnTLSAndItsExpiry(t *testing.T) {
	e := newEnv(t)
	var mu sync.Mutex
	clock := time.Now()
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	advance := func(d time.Duration) { mu.Lock(); clock = clock.Add(d); mu.Unlock() }
	dash := &ui.Server{Store: e.d.Store, Publisher: e.d.Publisher, Fleet: e.d.Fleet, Log: e.d.Fleet.Log, Now: now,
		IdleTimeout: time.Hour, MaxAge: 3 * time.Hour}
	srv := httptest.NewTLSServer(dash.Handler())
	t.Cleanup(srv.Close)

	b := e.browser()
	b.e = &env{t: t, ctx: e.ctx, d: e.d, url: srv.URL, admin: e.admin}
	b.c.Transport = srv.Client().Transport
	resp, _ := b.post("/ui/signin", url.Values{"token": {e.admin}})
	if resp.StatusCode != http.StatusSeeOther || len(resp.Cookies()) != 1 {
		t.Fatalf("sign in: %s", resp.Status)
	}
	if c := resp.Cookies()[0]; !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode {
		t.Errorf("cookie on HTTPS %s: want Secure, HttpOnly, SameSite=Strict", c)
	}
	// Used every 50 minutes, the session lives on, up to its maximum age.
	for range 3 {
		advance(50 * time.Minute)
		b.page("/ui/")
	}
	advance(40 * time.Minute) // 3h10m after sign-in
	resp, _ = b.get("/ui/")
	if resp.StatusCode != http.StatusSeeOther || !strings.Contains(resp.Header.Get("Location"), "why=expired") {
		t.Errorf("past the maximum age: %s to %q, want the sign-in page", resp.Status, resp.Header.Get("Location"))
	}
	wantIn(t, b.page("/ui/signin?why=expired"), "Your session ended")

	// Unused for an hour, it ends too.
	b.signIn(e.admin)
	advance(time.Hour)
	if resp, _ := b.get("/ui/"); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("after an idle hour: %s, want the sign-in page", resp.Status)
	}
}
