//go:build e2e && unix

package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/dropless/dropless/pkg/protocol"
)

// screenshots is where the dashboard test saves what the browser showed
// (CI keeps the directory; a few are in the README).
const screenshots = "screenshots"

// TestDashboardInBrowser drives the dashboard in real headless Chromium
// against a real server with real agents: sign in, the fleet with its
// versions, a rolled-back job's reason on its site's page, support
// upgrading a site from its page (the agent then runs the new version,
// and the audit view names support's token), a viewer seeing no buttons,
// and an agent's XSS string shown as text.
func TestDashboardInBrowser(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("needs Debian's chromium (apt-get install chromium; .ci/run installs it)")
	}
	env := New(t)
	env.Publish(t, "1.0.0", Healthy)
	env.Publish(t, "1.1.0", Healthy, "--upgrade-from", ">= 1.0, < 1.1")
	env.Publish(t, "1.2.0", Unhealthy, "--upgrade-from", ">= 1.0, < 1.2")
	acme := env.NewSite(t, "acme-prod", "acme")
	globex := env.NewSite(t, "globex-hq", "globex")
	for _, s := range []*Site{acme, globex} {
		s.Upgrade(t, "1.0.0")
	}
	acme.AwaitHealthy(t, "1.0.0")
	globex.AwaitHealthy(t, "1.0.0")
	acme.AwaitJob(t)
	globex.AwaitJob(t)
	globex.Upgrade(t, "1.2.0")
	Await(t, "globex-hq's bad upgrade rolled back with its reason", func() bool {
		j := globex.History(t)[0]
		return j.Result == protocol.ResultRolledBack && strings.Contains(j.Reason, "health check failed")
	})
	const xss = `<img src=x onerror=alert(1)>`
	fakeAgent(t, env, "evil-site", "evil", protocol.CheckinRequest{InstalledVersion: "1.0.0", Hostname: "h" + xss, Drift: []string{"files/index.html " + xss}})
	support := strings.TrimSpace(env.MustCLI(t, "token", "create", "--role", "support", "--name", "sam"))
	viewer := strings.TrimSpace(env.MustCLI(t, "token", "create", "--role", "viewer", "--name", "vic"))

	b := newBrowser(t, chromium)
	// An agent's string must never run: any dialog fails the test.
	dialogs := chromedp.Events(b.ctx, page.JavascriptDialogOpening)
	go func() {
		for ev, err := range dialogs {
			if err != nil {
				return
			}
			t.Errorf("the page opened a JavaScript dialog: %q", ev.Message)
			chromedp.Call(b.ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
		}
	}()

	b.signIn(env.URL, support)
	fleet := b.text("main")
	for _, want := range []string{"acme-prod", "globex-hq", "evil-site", "1.0.0", "sampleapp", "online", "rolled_back"} {
		if !strings.Contains(fleet, want) {
			t.Errorf("the fleet view lacks %q:\n%s", want, fleet)
		}
	}
	b.shot("fleet")

	b.do(chromedp.Navigate(env.URL + "/ui/sites/globex-hq"))
	if txt := b.text("main"); !strings.Contains(txt, "health check failed") || !strings.Contains(txt, "rolled_back") {
		t.Errorf("globex-hq's page lacks the rolled-back job's reason:\n%s", txt)
	}
	b.shot("site-rolled-back")

	// Support upgrades acme-prod from its page.
	b.do(chromedp.Navigate(env.URL + "/ui/"))
	b.click(`a[href="/ui/sites/acme-prod"]`)
	b.do(chromedp.SetValue(chromedp.CSS(`select[name="to"]`), "1.1.0"),
		chromedp.Click(chromedp.CSS(`input[name="now"]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name="reason"]`), "customer asked for the fix"))
	b.click(`.upgrade button[type="submit"]`)
	if txt := b.text(".flash"); !strings.Contains(txt, "Upgrade to 1.1.0 assigned") {
		t.Fatalf("after the upgrade form: %q", txt)
	}
	acme.AwaitHealthy(t, "1.1.0")
	if j := acme.AwaitJob(t); j.Result != protocol.ResultSucceeded || j.To != "1.1.0" || !strings.HasPrefix(j.CreatedBy, "sam (token") {
		t.Fatalf("the dashboard's job: %+v", j)
	}
	b.do(chromedp.Reload())
	if txt := b.text("main"); !strings.Contains(txt, "1.0.0 → 1.1.0") || !strings.Contains(txt, "succeeded") {
		t.Errorf("acme-prod's page after the upgrade:\n%s", txt)
	}
	b.shot("site")

	// The XSS string is text: on the page, and no image element made of it.
	b.do(chromedp.Navigate(env.URL + "/ui/sites/evil-site"))
	if txt := b.text("main"); !strings.Contains(txt, xss) {
		t.Errorf("evil-site's page does not show the agent's string as text:\n%s", txt)
	}
	if n := b.eval(`document.querySelectorAll("main img").length`); n != 0 {
		t.Errorf("evil-site's page has %v img elements", n)
	}

	// Support pauses a rollout from its page; the CLI sees it paused. (Its
	// site's agent never picks the job up: the rollout stays running.)
	fakeAgent(t, env, "quiet-site", "quiet", protocol.CheckinRequest{InstalledVersion: "1.0.0"})
	if id := strings.TrimSpace(env.MustCLI(t, "rollout", "create", "--product", Product, "--version", "1.1.0", "--site", "quiet-site")); id != "1" {
		t.Fatalf("rollout create printed %q", id)
	}
	b.do(chromedp.Navigate(env.URL + "/ui/rollouts"))
	b.click(`a[href="/ui/rollouts/1"]`)
	b.click(`form[action="/ui/rollouts/1/pause"] button`)
	if txt := b.text(".flash"); !strings.Contains(txt, "Rollout 1 is paused.") {
		t.Fatalf("after the pause button: %q", txt)
	}
	b.shot("rollout")
	var ro protocol.Rollout
	if err := json.Unmarshal([]byte(env.MustCLI(t, "rollout", "show", "1", "--json")), &ro); err != nil || ro.State != protocol.RolloutPaused {
		t.Errorf("rollout show 1 after the dashboard paused it: %s %v", ro.State, err)
	}

	// The audit view (admin) names support's token.
	b.signOut()
	b.signIn(env.URL, env.Admin)
	b.do(chromedp.Navigate(env.URL + "/ui/audit"))
	if txt := b.text("main"); !strings.Contains(txt, "sam (token") || !strings.Contains(txt, "customer asked for the fix") {
		t.Errorf("the audit view lacks support's upgrade:\n%s", txt)
	}
	b.shot("audit")
	b.do(chromedp.Navigate(env.URL + "/ui/releases"))
	b.shot("releases")

	// A viewer sees no buttons.
	b.signOut()
	b.signIn(env.URL, viewer)
	for _, p := range []string{"/ui/sites/acme-prod", "/ui/releases", "/ui/rollouts/1"} {
		b.do(chromedp.Navigate(env.URL + p))
		if n := b.eval(`document.querySelectorAll("form[method=post]:not(.signout)").length`); n != 0 {
			t.Errorf("a viewer's %s has %v forms that change something", p, n)
		}
	}

	// And the CLI sees what the dashboard did.
	out := env.MustCLI(t, "audit", "list", "--actor", "sam")
	if !strings.Contains(out, "customer asked for the fix") {
		t.Errorf("audit list --actor sam:\n%s", out)
	}
}

// fakeAgent enrolls a site through the agent API and checks in with c:
// an agent that says what the test wants.
func fakeAgent(t *testing.T, env *Env, site, client string, c protocol.CheckinRequest) {
	t.Helper()
	tok := strings.TrimSpace(env.MustCLI(t, "enroll-token", "create", "--client", client))
	var enrolled protocol.EnrollResponse
	postJSON(t, env.URL+"/api/v1/agent/enroll", "", protocol.EnrollRequest{Token: tok, Site: site, Client: client, Product: Product}, &enrolled)
	postJSON(t, env.URL+"/api/v1/agent/checkin", enrolled.Credential, c, nil)
}

func postJSON(t *testing.T, url, bearer string, body, out any) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		t.Fatalf("POST %s: %s", url, resp.Status)
	}
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatal(err)
		}
	}
}

// browser is one headless Chromium tab.
type browser struct {
	t   *testing.T
	ctx context.Context
}

func newBrowser(t *testing.T, chromium string) *browser {
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium), chromedp.WindowSize(1280, 860))
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox)
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelA() })
	b := &browser{t: t, ctx: ctx}
	// The first run starts the browser, without a timeout (it would stop
	// the browser).
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return b
}

// step bounds one browser step.
const step = 30 * time.Second

func (b *browser) do(actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, step)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("browser: %v", err)
	}
}

// click clicks an element that leads to another page, and waits for it.
func (b *browser) click(sel string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, step)
	defer cancel()
	if _, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(sel))); err != nil {
		b.t.Fatalf("browser: click %s: %v", sel, err)
	}
}

func (b *browser) text(sel string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, step)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		b.t.Fatalf("browser: text of %s: %v", sel, err)
	}
	return s
}

func (b *browser) eval(js string) float64 {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, step)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[float64](js))
	if err != nil {
		b.t.Fatalf("browser: %s: %v", js, err)
	}
	return v
}

func (b *browser) signIn(url, token string) {
	b.t.Helper()
	b.do(chromedp.Navigate(url + "/"))
	if loc := b.location(); !strings.HasSuffix(loc, "/ui/signin") {
		b.t.Fatalf("a browser without a session went to %s, want the sign-in page", loc)
	}
	b.do(chromedp.SendKeys(chromedp.CSS("#token"), token))
	b.click(`.signin button[type="submit"]`)
	if loc := b.location(); !strings.HasSuffix(loc, "/ui/") {
		b.t.Fatalf("after signing in the browser is at %s: %s", loc, b.text("main"))
	}
}

func (b *browser) signOut() {
	b.t.Helper()
	b.click(`.signout button`)
}

func (b *browser) location() string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, step)
	defer cancel()
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		b.t.Fatal(err)
	}
	return loc
}

// shot saves a PNG of the whole page as screenshots/NAME.png.
func (b *browser) shot(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, step)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot: %v", err)
	}
	if err := os.MkdirAll(screenshots, 0o755); err != nil {
		b.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(screenshots, name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}
