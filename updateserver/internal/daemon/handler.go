package daemon

import (
	"net/http"

	"github.com/dropless/dropless/updateserver/internal/api"
	"github.com/dropless/dropless/updateserver/internal/ui"
)

// handler is the server's top-level handler: the dashboard under /ui/
// (its failed sign-ins count against the API's limit of failed
// authentications per source), GET / sends a browser there, and
// everything else is the API's (its routes list stays the only way
// routes reach it; WrapHandler wraps the API only).
func (d *Daemon) handler() http.Handler {
	a := &api.Server{Store: d.Store, Publisher: d.Publisher, Fleet: d.Fleet, Log: d.log, Metrics: d.Metrics, MetricsPublic: d.cfg.MetricsPublic}
	h := a.Handler()
	if d.cfg.WrapHandler != nil {
		h = d.cfg.WrapHandler(h)
	}
	dash := &ui.Server{Store: d.Store, Publisher: d.Publisher, Fleet: d.Fleet, Log: d.log}
	mux := http.NewServeMux()
	mux.Handle(ui.Prefix, a.LimitAuthFailures(dash.Handler()))
	mux.Handle("GET /{$}", http.RedirectHandler(ui.Prefix, http.StatusFound))
	mux.Handle("/", h)
	return mux
}
