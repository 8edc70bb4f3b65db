package ui_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/store"
)

func TestRootRedirectsAndPagesNeedSignIn(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	resp, _ := b.get("/")
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/ui/" {
		t.Fatalf("GET /: %s to %q, want a redirect to /ui/", resp.Status, resp.Header.Get("Location"))
	}
	for _, p := range []string{"/ui/", "/ui/sites/x", "/ui/releases", "/ui/audit"} {
		resp, _ := b.get(p)
		if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/ui/signin") {
			t.Errorf("GET %s without a session: %s to %q, want the sign-in page", p, resp.Status, resp.Header.Get("Location"))
		}
	}
	// The API is still the API.
	resp, body := b.get("/api/v1/sites")
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "bearer token") {
		t.Errorf("GET /api/v1/sites without a token: %s %s", resp.Status, body)
	}
	if resp, _ := b.get("/healthz"); resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz: %s", resp.Status)
	}
}

func TestSignInCookieAndSignOut(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	resp, body := b.post("/ui/signin", url.Values{"token": {"dlo_not-a-token"}})
	if resp.StatusCode != http.StatusUnauthorized || len(resp.Cookies()) != 0 {
		t.Fatalf("a wrong token: %s with %d cookies, want 401 and none", resp.Status, len(resp.Cookies()))
	}
	wantIn(t, body, "That token is not valid")

	resp, _ = b.post("/ui/signin", url.Values{"token": {e.admin}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign in: %s", resp.Status)
	}
	cs := resp.Cookies()
	if len(cs) != 1 {
		t.Fatalf("sign in set %d cookies, want 1", len(cs))
	}
	c := cs[0]
	if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/ui/" || c.Secure {
		t.Errorf("cookie %s: want HttpOnly, SameSite=Strict, Path=/ui/, and not Secure on plain HTTP", c)
	}
	if strings.Contains(c.Value, e.admin) || len(c.Value) < 40 {
		t.Errorf("the cookie %q should hold a random session ID, not the token", c.Value)
	}
	wantIn(t, b.page("/ui/"), "admin (admin)", "Sign out")

	resp, _ = b.post("/ui/signout", url.Values{"csrf": {b.csrf()}})
	if resp.StatusCode != http.StatusSeeOther || !strings.Contains(resp.Header.Get("Location"), "signedout") {
		t.Fatalf("sign out: %s to %q", resp.Status, resp.Header.Get("Location"))
	}
	// The old session ID no longer works, even if a browser kept it.
	b2 := e.browser()
	b2.c.Jar.SetCookies(mustURL(t, e.url+"/ui/"), []*http.Cookie{{Name: c.Name, Value: c.Value, Path: "/ui/"}})
	if resp, _ := b2.get("/ui/"); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("the signed-out session still opens the fleet: %s", resp.Status)
	}
}

func TestRevokedTokenEndsTheSession(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.signIn(e.token("alice", protocol.RoleSupport))
	b.page("/ui/")
	if _, err := e.d.Store.RevokeToken(e.ctx, time.Now(), "alice", "test"); err != nil {
		t.Fatal(err)
	}
	resp, _ := b.get("/ui/")
	if resp.StatusCode != http.StatusSeeOther || !strings.Contains(resp.Header.Get("Location"), "why=token") {
		t.Errorf("after the token was revoked: %s to %q, want the sign-in page", resp.Status, resp.Header.Get("Location"))
	}
}

func TestFormsNeedTheCSRFToken(t *testing.T) {
	e := newEnv(t)
	e.enroll("acme-prod", "acme", protocol.CheckinRequest{InstalledVersion: "1.0.0"})
	e.publish("1.1.0")
	b := e.browser()
	b.signIn(e.token("alice", protocol.RoleSupport))
	csrf := b.csrf()
	for _, tc := range []struct {
		name string
		form url.Values
		hdr  []string
	}{
		{"no token", url.Values{"to": {"1.1.0"}}, nil},
		{"a wrong token", url.Values{"to": {"1.1.0"}, "csrf": {csrf + "x"}}, nil},
		{"cross-site, with the token", url.Values{"to": {"1.1.0"}, "csrf": {csrf}}, []string{"Sec-Fetch-Site", "cross-site"}},
		{"another origin, with the token", url.Values{"to": {"1.1.0"}, "csrf": {csrf}}, []string{"Origin", "https://evil.example"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, _ := b.post("/ui/sites/acme-prod/upgrade", tc.form, tc.hdr...)
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("%s, want 403", resp.Status)
			}
		})
	}
	if p, err := e.d.Fleet.History(e.ctx, "acme-prod", "", 10); err != nil || len(p.Jobs) != 0 {
		t.Fatalf("a refused form made jobs: %v %v", p.Jobs, err)
	}
	// Signing out needs it too: a link elsewhere cannot sign a person out.
	if resp, _ := b.post("/ui/signout", nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("sign out without the CSRF token: %s, want 403", resp.Status)
	}
}

func TestUpgradeFromTheSitePageIsAudited(t *testing.T) {
	e := newEnv(t)
	e.enroll("acme-prod", "acme", protocol.CheckinRequest{InstalledVersion: "1.0.0"})
	e.publish("1.1.0")
	b := e.browser()
	b.signIn(e.token("alice", protocol.RoleSupport))
	resp, _ := b.post("/ui/sites/acme-prod/upgrade", url.Values{"to": {"1.1.0"}, "now": {"1"}, "reason": {"customer asked"}, "csrf": {b.csrf()}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/sites/acme-prod" {
		t.Fatalf("upgrade: %s to %q", resp.Status, resp.Header.Get("Location"))
	}
	wantIn(t, b.page("/ui/sites/acme-prod"), "Upgrade to 1.1.0 assigned, now.", "1.0.0 → 1.1.0", "alice (token")
	p, err := e.d.Fleet.History(e.ctx, "acme-prod", "", 10)
	if err != nil || len(p.Jobs) != 1 || p.Jobs[0].To != "1.1.0" {
		t.Fatalf("jobs after the upgrade: %+v %v", p.Jobs, err)
	}
	es, err := e.d.Store.AuditLog(e.ctx, store.AuditQuery{Actor: "alice", Limit: 10})
	if err != nil || len(es) == 0 || !strings.HasPrefix(es[0].Action, "upgrade") || !strings.Contains(es[0].Detail+es[0].Object, "customer asked") {
		t.Fatalf("audit entries of alice: %+v %v", es, err)
	}
	// The admin sees it in the audit view.
	a := e.browser()
	a.signIn(e.admin)
	wantIn(t, a.page("/ui/audit?actor=alice"), "alice (token", es[0].Action, "customer asked")

	// A refusal is shown on the page, not as a broken answer.
	resp, _ = b.post("/ui/sites/acme-prod/upgrade", url.Values{"to": {"9.9.9"}, "csrf": {b.csrf()}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("upgrade to an unknown version: %s", resp.Status)
	}
	wantIn(t, b.page("/ui/sites/acme-prod"), `class="flash error"`, "9.9.9")
}

func TestButtonsFollowTheRole(t *testing.T) {
	e := newEnv(t)
	e.enroll("acme-prod", "acme", protocol.CheckinRequest{InstalledVersion: "1.0.0"})
	e.publish("1.1.0")
	upgradeForm := `action="/ui/sites/acme-prod/upgrade"`
	promoteForm := `action="/ui/releases/acme-erp/1.1.0/promote"`
	yankForm := `action="/ui/releases/acme-erp/1.1.0/yank"`
	auditLink := `href="/ui/audit"`
	for _, tc := range []struct {
		role           string
		want, unwanted []string
	}{
		{protocol.RoleViewer, nil, []string{upgradeForm, promoteForm, yankForm, auditLink}},
		{protocol.RoleSupport, []string{upgradeForm}, []string{promoteForm, yankForm, auditLink}},
		{protocol.RoleRelease, []string{promoteForm, yankForm}, []string{upgradeForm, auditLink}},
		{protocol.RoleAdmin, []string{upgradeForm, promoteForm, yankForm, auditLink}, nil},
	} {
		t.Run(tc.role, func(t *testing.T) {
			b := e.browser()
			b.signIn(e.token("t-"+tc.role, tc.role))
			body := b.page("/ui/sites/acme-prod") + b.page("/ui/releases")
			wantIn(t, body, tc.want...)
			wantNotIn(t, body, tc.unwanted...)
		})
	}
	// And what a page does not offer, the server refuses anyway.
	b := e.browser()
	b.signIn(e.token("vera", protocol.RoleViewer))
	csrf := b.csrf()
	for path, form := range map[string]url.Values{
		"/ui/sites/acme-prod/upgrade":         {"to": {"1.1.0"}, "csrf": {csrf}},
		"/ui/releases/acme-erp/1.1.0/promote": {"channel": {"stable"}, "csrf": {csrf}},
		"/ui/releases/acme-erp/1.1.0/yank":    {"reason": {"x"}, "csrf": {csrf}},
	} {
		if resp, body := b.post(path, form); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "needs the") {
			t.Errorf("a viewer's POST %s: %s, want 403 naming the role it needs", path, resp.Status)
		}
	}
	if resp, _ := b.get("/ui/audit"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a viewer's audit view: %s, want 403", resp.Status)
	}
}

func TestReleasesPromoteAndYank(t *testing.T) {
	e := newEnv(t)
	e.publish("1.1.0")
	b := e.browser()
	b.signIn(e.token("rita", protocol.RoleRelease))
	csrf := b.csrf()
	if resp, _ := b.post("/ui/releases/acme-erp/1.1.0/yank", url.Values{"reason": {"corrupts <b>invoices</b>"}, "csrf": {csrf}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("yank: %s", resp.Status)
	}
	body := b.page("/ui/releases")
	wantIn(t, body, "acme-erp 1.1.0 is yanked.", "yanked", "corrupts &lt;b&gt;invoices&lt;/b&gt;", "notes of 1.1.0")
	rel, err := e.d.Store.GetRelease(e.ctx, "acme-erp", "1.1.0")
	if err != nil || !rel.Yanked {
		t.Fatalf("after the yank: %+v %v", rel, err)
	}
	es, err := e.d.Store.AuditLog(e.ctx, store.AuditQuery{Actor: "rita", Limit: 10})
	if err != nil || len(es) != 1 {
		t.Fatalf("audit entries of rita: %+v %v", es, err)
	}
}

func TestAgentTextIsEscaped(t *testing.T) {
	e := newEnv(t)
	const xss = `<img src=x onerror=alert(1)>`
	c := protocol.CheckinRequest{InstalledVersion: "1.0.0", Hostname: "h" + xss, Drift: []string{"files/a.txt " + xss}}
	e.enroll("acme-prod", "acme", c)
	e.publish("1.1.0")
	resp, err := e.d.Fleet.Upgrade(e.ctx, protocol.UpgradeRequest{Site: "acme-prod", To: "1.1.0", Now: true, Reason: "r", AcceptDrift: true}, "support")
	if err != nil {
		t.Fatal(err)
	}
	job := resp.Jobs[0]
	if _, err := e.d.Fleet.Checkin(e.ctx, "acme-prod", c, 0); err != nil {
		t.Fatal(err)
	}
	evs := []protocol.Event{{JobID: job.ID, Seq: 1, State: protocol.StateDownloading, Message: "got " + xss, At: time.Now()}}
	if _, err := e.d.Fleet.Events(e.ctx, "acme-prod", evs); err != nil {
		t.Fatal(err)
	}
	// A state outside the protocol is refused at the check-in already.
	if _, err := e.d.Fleet.Checkin(e.ctx, "acme-prod", protocol.CheckinRequest{State: xss}, 0); err == nil {
		t.Error("a check-in with a made-up state was accepted")
	}

	b := e.browser()
	b.signIn(e.admin)
	for _, p := range []string{"/ui/", "/ui/sites/acme-prod"} {
		body := b.page(p)
		wantNotIn(t, body, "<img")
		if p != "/ui/" {
			wantIn(t, body, "h&lt;img src=x onerror=alert(1)&gt;", "files/a.txt &lt;img src=x onerror=alert(1)&gt;", "got &lt;img src=x onerror=alert(1)&gt;")
		}
	}
}

func TestFleetPagesAndFilters(t *testing.T) {
	e := newEnv(t)
	for i := range 120 {
		client, v := "acme", "1.0.0"
		if i%3 == 0 {
			client, v = "globex", "1.1.0"
		}
		e.enroll(siteName(i), client, protocol.CheckinRequest{InstalledVersion: v})
	}
	b := e.browser()
	b.signIn(e.token("vera", protocol.RoleViewer))
	body := b.page("/ui/")
	wantIn(t, body, "120 sites, page 1 of 3", `rel="next"`, ">80<", ">40<") // the version distribution: 80 on 1.0.0, 40 on 1.1.0
	if n := strings.Count(body, `href="/ui/sites/`); n != 50 {
		t.Errorf("page 1 lists %d sites, want 50", n)
	}
	body = b.page("/ui/?page=3")
	if n := strings.Count(body, `href="/ui/sites/`); n != 20 {
		t.Errorf("page 3 lists %d sites, want 20", n)
	}
	wantNotIn(t, body, `rel="next"`)

	body = b.page("/ui/?client=globex")
	wantIn(t, body, "40 sites", siteName(0), siteName(117))
	wantNotIn(t, body, ">"+siteName(1)+"<", `rel="next"`)
	body = b.page("/ui/?version=1.0.0&page=2")
	wantIn(t, body, "80 sites, page 2 of 2", `rel="prev"`, "version=1.0.0")
	body = b.page("/ui/?seen=offline")
	wantIn(t, body, "0 sites", "No site matches.")
	if resp, _ := b.get("/ui/?page=x"); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("page=x: %s, want 400", resp.Status)
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestFailedSignInsAreRateLimited(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	var last *http.Response
	for range 101 { // the API's burst of failed authentications, and one more
		last, _ = b.post("/ui/signin", url.Values{"token": {"dlo_guess"}})
	}
	if last.StatusCode != http.StatusTooManyRequests || last.Header.Get("Retry-After") == "" {
		t.Fatalf("the 101st wrong token: %s, want 429 with Retry-After", last.Status)
	}
	// The API refuses that source too: the limit is shared.
	if resp, _ := b.get("/api/v1/sites"); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("the API after 101 failed sign-ins: %s, want 429", resp.Status)
	}
}
