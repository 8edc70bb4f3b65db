//go:build e2e && unix

package testenv

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/dropless/dropless/pkg/protocol"
)

// The assignment is a request: whatever the server (or anyone between it
// and the agent) puts in it, the agent installs only what the release team
// signed for its configured product, within upgrade_from, and goes back to
// an older version only where its own config says allow_downgrade = true.

// lyingProxy stands between an agent and the real server: it passes every
// request through (API, long-polls, TUF), and rewrites the assignment of
// check-in answers with the function set by lie.
type lyingProxy struct {
	URL string

	mu      sync.Mutex
	rewrite func(a *protocol.Assignment)
}

func newLyingProxy(t *testing.T, env *Env) *lyingProxy {
	t.Helper()
	target, err := url.Parse(env.URL)
	if err != nil {
		t.Fatal(err)
	}
	p := &lyingProxy{}
	rp := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(target)
		r.Out.Header.Del("Accept-Encoding") // bodies this proxy reads stay plain
	}}
	rp.ModifyResponse = func(resp *http.Response) error {
		if resp.Request.Method != http.MethodPost || resp.Request.URL.Path != "/api/v1/agent/checkin" || resp.StatusCode != http.StatusOK {
			return nil
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		b = p.alter(t, b)
		resp.Body = io.NopCloser(bytes.NewReader(b))
		resp.ContentLength = int64(len(b))
		resp.Header.Set("Content-Length", strconv.Itoa(len(b)))
		return nil
	}
	srv := httptest.NewServer(rp)
	t.Cleanup(srv.Close)
	p.URL = srv.URL
	return p
}

// lie makes the proxy rewrite every assignment with fn (nil: pass them
// through).
func (p *lyingProxy) lie(fn func(a *protocol.Assignment)) {
	p.mu.Lock()
	p.rewrite = fn
	p.mu.Unlock()
}

// alter rewrites the assignment of one check-in answer, keeping every
// other field as the server sent it.
func (p *lyingProxy) alter(t *testing.T, body []byte) []byte {
	p.mu.Lock()
	fn := p.rewrite
	p.mu.Unlock()
	var fields map[string]json.RawMessage
	if fn == nil || json.Unmarshal(body, &fields) != nil {
		return body
	}
	raw, ok := fields["assignment"]
	if !ok || string(raw) == "null" {
		return body
	}
	var a protocol.Assignment
	if err := json.Unmarshal(raw, &a); err != nil {
		return body
	}
	fn(&a)
	out, err := json.Marshal(a)
	if err != nil {
		t.Error(err)
		return body
	}
	fields["assignment"] = out
	b, err := json.Marshal(fields)
	if err != nil {
		t.Error(err)
		return body
	}
	return b
}

// newSiteVia enrolls and starts a site whose agent talks to the server (API
// and TUF) through serverURL.
func newSiteVia(t *testing.T, env *Env, serverURL, name string, extraConfig ...string) *Site {
	t.Helper()
	s := env.PrepareSite(t, name, "acme", extraConfig...)
	b, err := os.ReadFile(s.Config)
	if err != nil {
		t.Fatal(err)
	}
	was := "server = " + strconv.Quote(env.URL) + "\n"
	if !bytes.Contains(b, []byte(was)) {
		t.Fatalf("%s has no %q", s.Config, was)
	}
	b = bytes.Replace(b, []byte(was), []byte("server = "+strconv.Quote(serverURL)+"\n"), 1)
	if err := os.WriteFile(s.Config, b, 0o644); err != nil {
		t.Fatal(err)
	}
	s.StartAgent(t)
	Await(t, "site "+name+" checked in", func() bool { return s.Info(t).LastSeen != nil })
	return s
}

// appPID is the pid of the site's running sample app (its pidfile).
func appPID(t *testing.T, s *Site) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.Dir, "app.pid"))
	if err != nil {
		t.Fatalf("the app of %s has no pidfile: %v", s.Name, err)
	}
	return strings.TrimSpace(string(b))
}

// publishTrustReleases publishes what the trust tests offer: sampleapp
// 0.9.0 (yanked), 1.0.0, 1.1.0 and 2.0.0 (upgrades only from >= 1.5), and
// otherapp 2.5.0, another product on the same server.
func publishTrustReleases(t *testing.T, env *Env) {
	t.Helper()
	env.Publish(t, "0.9.0", Healthy)
	env.MustCLI(t, "release", "yank", "--product", Product, "--version", "0.9.0", "--reason", "data loss")
	env.Publish(t, "1.0.0", Healthy)
	env.Publish(t, "1.1.0", Healthy)
	env.Publish(t, "2.0.0", Healthy, "--upgrade-from", ">= 1.5")
	env.PublishBundle(t, "2.5.0", Bundle{Product: "otherapp"})
}

// refused checks the site's newest job (the one the agent was lied to
// about) ended failed before stopping, with a reason containing want, and
// that the app runs 1.0.0 in the same process.
func refused(t *testing.T, site *Site, jobID, pid, want string) {
	t.Helper()
	j := awaitReason(t, site, want)
	if j.ID != jobID {
		t.Fatalf("newest job %s, want %s", j.ID, jobID)
	}
	if states := eventStates(j); j.Result != protocol.ResultFailed || slices.Contains(states, protocol.StateStopping) {
		t.Fatalf("job %s: %s, events %s", j.ID, j.Result, fmtEvents(j))
	}
	if last := j.Events[len(j.Events)-1]; last.State != protocol.StateFailed || !strings.Contains(last.Message, "(the app was not touched)") {
		t.Errorf("last event %+v", last)
	}
	if got := appPID(t, site); got != pid {
		t.Errorf("the app was restarted: pid %s, was %s", got, pid)
	}
	if v, err := site.AppVersion(); err != nil || v != "1.0.0" {
		t.Errorf("the app answers %q, %v; want 1.0.0", v, err)
	}
	if v := site.Info(t).InstalledVersion; v != "1.0.0" {
		t.Errorf("the server sees %q installed, want 1.0.0", v)
	}
}

// newJob has support assign 1.1.0 to the site (a real job the server
// knows) and returns its ID; the proxy rewrites the assignment.
func newJob(t *testing.T, env *Env, site *Site) string {
	t.Helper()
	before := site.History(t)[0].ID
	env.MustCLI(t, "upgrade", "--site", site.Name, "--to", "1.1.0", "--now")
	j := site.History(t)[0]
	if j.ID == before || j.To != "1.1.0" {
		t.Fatalf("newest job after the upgrade: %+v", j)
	}
	return j.ID
}

// TestTrustLyingServer: a proxy between agent and server rewrites the
// assignment of a real job. The agent refuses each lie before it stops the
// app; the same downgrade goes through on a site whose config allows it.
func TestTrustLyingServer(t *testing.T) {
	t.Parallel()
	env := New(t)
	publishTrustReleases(t, env)

	proxy := newLyingProxy(t, env)
	site := newSiteVia(t, env, proxy.URL, "acme-prod")
	site.Upgrade(t, "1.0.0")
	site.AwaitHealthy(t, "1.0.0")
	site.AwaitJob(t)
	pid := appPID(t, site)

	// The server's planner refuses another product's version up front.
	if _, errs, code := env.CLI("upgrade", "--site", site.Name, "--to", "2.5.0", "--now"); code == 0 || !strings.Contains(errs, "sampleapp 2.5.0 is not published") {
		t.Errorf("the planner assigned otherapp's 2.5.0 to a sampleapp site: exit %d: %s", code, errs)
	}

	tests := []struct {
		name string
		lie  func(a *protocol.Assignment)
		want string
	}{
		{
			name: "another product's signed target",
			lie: func(a *protocol.Assignment) {
				a.Version, a.Target = "2.5.0", "otherapp/otherapp-2.5.0.tar.gz"
			},
			want: `refused: the signed target otherapp/otherapp-2.5.0.tar.gz is of product "otherapp", this agent manages sampleapp: the server assigned another product's release; check the server (it may be compromised)`,
		},
		{
			name: "an assignment of another product",
			lie: func(a *protocol.Assignment) {
				a.Product, a.Version, a.Target = "otherapp", "2.5.0", "otherapp/otherapp-2.5.0.tar.gz"
			},
			want: `refused: the assignment is for product "otherapp", this agent manages sampleapp`,
		},
		{
			name: "a yanked older release, downgrade asked",
			lie: func(a *protocol.Assignment) {
				a.Version, a.Target, a.AllowDowngrade = "0.9.0", "sampleapp/sampleapp-0.9.0.tar.gz", true
			},
			want: "refused: sampleapp 0.9.0 is older than the installed 1.0.0 and this agent's config does not allow downgrades (the assignment asks for it): set allow_downgrade = true in the agent's config if this site may go back",
		},
		{
			name: "signed upgrade_from excludes the installed version",
			lie: func(a *protocol.Assignment) {
				a.Version, a.Target = "2.0.0", "sampleapp/sampleapp-2.0.0.tar.gz"
			},
			want: `refused: sampleapp 2.0.0 cannot upgrade from the installed 1.0.0: its signed upgrade_from is ">= 1.5"`,
		},
		{
			name: "a false From does not satisfy upgrade_from",
			lie: func(a *protocol.Assignment) {
				a.Version, a.Target, a.From = "2.0.0", "sampleapp/sampleapp-2.0.0.tar.gz", "1.9.0"
			},
			want: `refused: sampleapp 2.0.0 cannot upgrade from the installed 1.0.0: its signed upgrade_from is ">= 1.5"`,
		},
		{
			name: "signed version differs from the assigned version",
			lie: func(a *protocol.Assignment) {
				a.Target = "sampleapp/sampleapp-2.0.0.tar.gz" // version stays 1.1.0
			},
			want: `refused: the signed target sampleapp/sampleapp-2.0.0.tar.gz is version "2.0.0", the assignment says 1.1.0`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			proxy.lie(tt.lie)
			defer proxy.lie(nil)
			id := newJob(t, env, site)
			refused(t, site, id, pid, tt.want)
		})
	}

	// The same downgrade on a site whose config allows it goes through.
	proxyB := newLyingProxy(t, env)
	siteB := newSiteVia(t, env, proxyB.URL, "acme-test", "allow_downgrade = true")
	siteB.Upgrade(t, "1.0.0")
	siteB.AwaitHealthy(t, "1.0.0")
	siteB.AwaitJob(t)
	proxyB.lie(func(a *protocol.Assignment) {
		a.Version, a.Target, a.AllowDowngrade = "0.9.0", "sampleapp/sampleapp-0.9.0.tar.gz", true
	})
	id := newJob(t, env, siteB)
	siteB.AwaitHealthy(t, "0.9.0")
	j := siteB.AwaitJob(t)
	if j.ID != id || j.Result != protocol.ResultSucceeded || !slices.Contains(eventStates(j), protocol.StateStopping) {
		t.Fatalf("allowed downgrade: job %s (want %s) %s, events %s", j.ID, id, j.Result, fmtEvents(j))
	}
}

// TestTrustStolenServer: with the targets key taken off the server, a thief
// who writes a job straight into the server's store, assigning another
// product's signed target, gets the agent to do nothing: it refuses before
// the app is touched.
func TestTrustStolenServer(t *testing.T) {
	t.Parallel()
	env := New(t)
	publishTrustReleases(t, env)
	site := env.NewSite(t, "acme-prod", "acme")
	site.Upgrade(t, "1.0.0")
	site.AwaitHealthy(t, "1.0.0")
	site.AwaitJob(t)
	pid := appPID(t, site)

	// The release team takes its key away; the server keeps running.
	env.MustCLI(t, "key", "export", "--data", env.Data, "--role", "targets", "--out", filepath.Join(env.Dir, "targets.pem"), "--remove")
	if _, err := os.Stat(filepath.Join(env.Data, "keys", "targets.pem")); !os.IsNotExist(err) {
		t.Fatalf("the targets key is still on the server: %v", err)
	}

	// The thief writes the job the server would never plan.
	db, err := sql.Open("sqlite", "file:"+filepath.Join(env.Data, "updateserver.db")+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Now().UTC().Format(time.RFC3339Nano)
	const id = "job-planted-by-a-thief"
	_, err = db.Exec(`INSERT INTO jobs (id, site, product, from_version, to_version, target, result, now, created_at, created_by, last_progress_at)
		VALUES (?, ?, ?, ?, ?, ?, 'pending', 1, ?, 'thief', ?)`,
		id, site.Name, Product, "1.0.0", "2.5.0", "otherapp/otherapp-2.5.0.tar.gz", now, now)
	if err != nil {
		t.Fatal(err)
	}
	refused(t, site, id, pid, `refused: the signed target otherapp/otherapp-2.5.0.tar.gz is of product "otherapp", this agent manages sampleapp`)
}
