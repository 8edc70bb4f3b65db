// Package ui is the server's web dashboard under /ui/: server-rendered
// pages (html/template, embedded in the binary) for the people who run
// the fleet. A person signs in with an operator token; the dashboard is a
// client of the same rules as the operator API: the same roles (what a
// role may not do, its pages do not offer, and its forms are refused),
// the same fleet, publish and store calls, and so the same audit entries,
// made with the token's name.
//
// By file: session.go (sessions and their CSRF tokens), auth.go (sign in
// and out, the per-request session check), fleet.go (the fleet and a
// site, the upgrade form), releases.go (releases, promote and yank),
// rollouts.go (rollouts, their waves, pause, resume and cancel), audit.go
// (the audit log).
//
// Everything an agent sent (state, drift, messages) reaches the page only
// through html/template's contextual escaping, never as template.HTML.
package ui

import (
	"embed"
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/api"
	"github.com/dropless/dropless/updateserver/internal/fault"
	"github.com/dropless/dropless/updateserver/internal/fleet"
	"github.com/dropless/dropless/updateserver/internal/maint"
	"github.com/dropless/dropless/updateserver/internal/publish"
	"github.com/dropless/dropless/updateserver/internal/store"
)

//go:embed templates/*.html static/*
var files embed.FS

// Prefix is where the dashboard is served.
const Prefix = "/ui/"

// Server serves the dashboard.
type Server struct {
	Store     *store.Store
	Publisher *publish.Publisher
	Fleet     *fleet.Fleet
	Log       *slog.Logger
	Now       func() time.Time
	// IdleTimeout ends a session unused this long (default 1h); MaxAge
	// any session this old (default 12h).
	IdleTimeout, MaxAge time.Duration

	sessions *sessions
	pages    map[string]*template.Template
}

// The roles the dashboard's actions need: those of the API routes that do
// the same.
var (
	roleUpgrade = api.RoleOf("POST " + protocol.APIVersion + "/upgrades")
	rolePromote = api.RoleOf("POST " + protocol.APIVersion + "/releases/{product}/{version}/promote")
	roleYank    = api.RoleOf("POST " + protocol.APIVersion + "/releases/{product}/{version}/yank")
	roleAudit   = api.RoleOf("GET " + protocol.APIVersion + "/audit")
	roleView    = api.RoleOf("GET " + protocol.APIVersion + "/sites")
	rolePause   = api.RoleOf("POST " + protocol.APIVersion + "/rollouts/{id}/pause")
	roleResume  = api.RoleOf("POST " + protocol.APIVersion + "/rollouts/{id}/resume")
	roleCancel  = api.RoleOf("POST " + protocol.APIVersion + "/rollouts/{id}/cancel")
	roleRollout = api.RoleOf("GET " + protocol.APIVersion + "/rollouts/{id}")
)

// Handler returns the dashboard's routes, all under Prefix.
func (s *Server) Handler() http.Handler {
	if s.IdleTimeout == 0 {
		s.IdleTimeout = time.Hour
	}
	if s.MaxAge == 0 {
		s.MaxAge = 12 * time.Hour
	}
	s.sessions = newSessions(s.IdleTimeout, s.MaxAge)
	s.pages = parsePages()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ui/signin", s.signinPage)
	mux.HandleFunc("POST /ui/signin", s.signin)
	mux.Handle("POST /ui/signout", s.action(s.signout, roleView))
	mux.Handle("GET /ui/{$}", s.view(s.fleetView, roleView))
	mux.Handle("GET /ui/sites/{site}", s.view(s.siteView, roleView))
	mux.Handle("POST /ui/sites/{site}/upgrade", s.action(s.upgrade, roleUpgrade))
	mux.Handle("GET /ui/releases", s.view(s.releasesView, roleView))
	mux.Handle("POST /ui/releases/{product}/{version}/promote", s.action(s.promote, rolePromote))
	mux.Handle("POST /ui/releases/{product}/{version}/yank", s.action(s.yank, roleYank))
	mux.Handle("GET /ui/rollouts", s.view(s.rolloutsView, roleRollout))
	mux.Handle("GET /ui/rollouts/{id}", s.view(s.rolloutView, roleRollout))
	mux.Handle("POST /ui/rollouts/{id}/pause", s.action(s.rolloutAction("pause"), rolePause))
	mux.Handle("POST /ui/rollouts/{id}/resume", s.action(s.rolloutAction("resume"), roleResume))
	mux.Handle("POST /ui/rollouts/{id}/cancel", s.action(s.rolloutAction("cancel"), roleCancel))
	mux.Handle("GET /ui/audit", s.view(s.auditView, roleAudit))
	mux.Handle("GET /ui/static/", http.StripPrefix("/ui/", http.FileServerFS(files)))
	mux.HandleFunc("/ui/", func(w http.ResponseWriter, r *http.Request) {
		s.errorPage(w, r, http.StatusNotFound, "There is no page "+r.URL.Path+".")
	})
	return headers(http.NewCrossOriginProtection().Handler(mux))
}

// headers sets what every answer of the dashboard carries: no caching of
// pages with fleet data, no framing, and a content security policy that
// runs no script at all (the pages need none) and posts forms only here.
func headers(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "same-origin")
		if !strings.HasPrefix(r.URL.Path, "/ui/static/") {
			hd.Set("Cache-Control", "no-store")
		}
		h.ServeHTTP(w, r)
	})
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Server) maint() *maint.Service { return &maint.Service{Store: s.Store, Now: s.Now} }

// page is what every page's template gets.
type page struct {
	Title string
	Nav   string // which nav entry is current
	Token store.Token
	CSRF  string
	Can   can
	Flash string
	Error bool // Flash is an error
	Data  any
}

// can says which actions the signed-in token's role allows: the page
// offers only those.
type can struct{ Upgrade, Promote, Yank, Audit, Rollout bool }

func canFor(role string) can {
	return can{
		Upgrade: api.Allowed(role, roleUpgrade),
		Promote: api.Allowed(role, rolePromote),
		Yank:    api.Allowed(role, roleYank),
		Audit:   api.Allowed(role, roleAudit),
		// Rollout: pause, resume and cancel (the page shows the ones the
		// rollout's state admits).
		Rollout: api.Allowed(role, rolePause) && api.Allowed(role, roleResume) && api.Allowed(role, roleCancel),
	}
}

// render writes a page with the given status.
func (s *Server) render(w http.ResponseWriter, status int, name string, p page) {
	t := s.pages[name]
	var buf strings.Builder
	if err := t.ExecuteTemplate(&buf, "layout", p); err != nil {
		s.Log.Error("dashboard: rendering a page failed", "page", name, "err", err)
		http.Error(w, "internal error: see the server log", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write([]byte(buf.String()))
}

// errorPage answers a page that says what went wrong.
func (s *Server) errorPage(w http.ResponseWriter, r *http.Request, status int, msg string) {
	s.render(w, status, "error.html", page{Title: http.StatusText(status), Flash: msg, Error: true})
}

// userError is the text of err to show a person: a fault's own message,
// else a pointer to the log (where the details go).
func (s *Server) userError(r *http.Request, err error) (int, string) {
	if fe, ok := fault.As(err); ok {
		switch fe.Kind {
		case fault.NotFound:
			return http.StatusNotFound, fe.Msg
		case fault.Conflict:
			return http.StatusConflict, fe.Msg
		case fault.Forbidden:
			return http.StatusForbidden, fe.Msg
		}
		return http.StatusBadRequest, fe.Msg
	}
	if !errors.Is(err, r.Context().Err()) {
		s.Log.Error("dashboard request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	return http.StatusInternalServerError, "internal error: see the server log"
}

func parsePages() map[string]*template.Template {
	funcs := template.FuncMap{
		"when":     when,
		"whenp":    func(t *time.Time) string { return whenPtr(t) },
		"dur":      dur,
		"join":     strings.Join,
		"downtime": downtime,
	}
	names, err := files.ReadDir("templates")
	if err != nil {
		panic(err)
	}
	pages := map[string]*template.Template{}
	for _, n := range names {
		if n.Name() == "layout.html" {
			continue
		}
		pages[n.Name()] = template.Must(template.New(n.Name()).Funcs(funcs).ParseFS(files, "templates/layout.html", "templates/"+n.Name()))
	}
	return pages
}

// when formats a time for a page (UTC, to the second); "" for the zero time.
func when(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

func whenPtr(t *time.Time) string {
	if t == nil {
		return ""
	}
	return when(*t)
}

// dur formats a duration to the second, or to the millisecond below one.
func dur(d time.Duration) string {
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// downtime is how long a job kept the app down (fleet.Downtime); 0 when
// the app was never stopped or it is not known.
func downtime(j protocol.Job) time.Duration {
	if ms := fleet.Downtime(j); ms != nil {
		return time.Duration(*ms) * time.Millisecond
	}
	return 0
}
