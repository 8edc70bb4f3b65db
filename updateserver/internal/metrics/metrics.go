// Package metrics is the server's Prometheus metrics (served at /metrics
// with prometheus/client_golang): the field (sites by product, version
// and state; online sites) read from the store at each scrape, and
// counters and histograms of what the server does (check-ins, long-polls
// held, jobs by result with their duration and downtime, webhook
// deliveries, bytes published, HTTP requests by route and code).
//
// Every label has bounded values: no site or client names; a product or
// version the server has no release of, and a state no agent has, are
// "other"; routes are the server's patterns, not request paths.
package metrics

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/fleet"
	"github.com/dropless/dropless/updateserver/internal/store"
)

const ns = "updateserver"

// Metrics holds the server's collectors. Its methods are safe on a nil
// *Metrics (they do nothing), so parts can be run without it.
type Metrics struct {
	reg *prometheus.Registry

	checkins     prometheus.Counter
	longPolls    prometheus.Gauge
	jobsEnded    *prometheus.CounterVec
	jobDuration  prometheus.Histogram
	downtime     prometheus.Histogram
	webhooks     *prometheus.CounterVec
	publishBytes prometheus.Counter
	published    prometheus.Counter
	httpRequests *prometheus.CounterVec
	httpDuration *prometheus.HistogramVec
}

// New makes the collectors; the field gauges read st at each scrape,
// counting a site online when it checked in at or after onlineSince()
// (fleet.Fleet.OnlineSince, as sites list does).
func New(st *store.Store, onlineSince func() time.Time, log *slog.Logger) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.checkins = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "checkins_total", Help: "Agent check-ins answered or held."})
	m.longPolls = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "long_polls_held", Help: "Agent check-ins held open now (long-polls)."})
	m.jobsEnded = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "jobs_ended_total", Help: "Jobs ended, by result (succeeded, rolled_back, failed)."}, []string{"result"})
	m.jobDuration = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "job_duration_seconds",
		Help:    "How long ended jobs ran, from the agent's first event to its last.",
		Buckets: []float64{1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200}})
	m.downtime = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "job_downtime_seconds",
		Help:    "How long a job had the application stopped: from stopping until committed or rolled back.",
		Buckets: []float64{0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800}})
	m.webhooks = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "webhook_deliveries_total",
		Help: "Webhook delivery attempts by outcome: delivered (2xx), failed (retried later), gone (410: webhook disabled)."}, []string{"outcome"})
	m.publishBytes = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "publish_bytes_total", Help: "Bytes of bundles published as releases."})
	m.published = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "releases_published_total", Help: "Releases published."})
	m.httpRequests = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "http_requests_total", Help: "HTTP requests by route pattern and status code."}, []string{"route", "code"})
	m.httpDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "http_request_duration_seconds",
		Help: "HTTP request latency by route pattern (check-ins include long-poll holds).", Buckets: prometheus.DefBuckets}, []string{"route"})
	for _, s := range []string{protocol.ResultSucceeded, protocol.ResultRolledBack, protocol.ResultFailed} {
		m.jobsEnded.WithLabelValues(s)
	}
	for _, o := range []string{"delivered", "failed", "gone"} {
		m.webhooks.WithLabelValues(o)
	}
	m.reg.MustRegister(m.checkins, m.longPolls, m.jobsEnded, m.jobDuration, m.downtime, m.webhooks, m.publishBytes, m.published,
		m.httpRequests, m.httpDuration, &field{st: st, onlineSince: onlineSince, log: log},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// CheckIn counts a check-in; with held it counts it as a held long-poll
// until the returned func is called.
func (m *Metrics) CheckIn(held bool) (done func()) {
	if m == nil {
		return func() {}
	}
	m.checkins.Inc()
	if !held {
		return func() {}
	}
	m.longPolls.Inc()
	return m.longPolls.Dec
}

// WebhookAttempt counts one delivery attempt's outcome.
func (m *Metrics) WebhookAttempt(outcome string) {
	if m != nil {
		m.webhooks.WithLabelValues(outcome).Inc()
	}
}

// Published counts a release of length bytes.
func (m *Metrics) Published(length int64) {
	if m != nil {
		m.published.Inc()
		m.publishBytes.Add(float64(length))
	}
}

// Route wraps h, the handler of route pattern, to count its requests by
// status and time them.
func (m *Metrics) Route(pattern string, h http.Handler) http.Handler {
	if m == nil {
		return h
	}
	rt := &route{m: m, pattern: pattern, dur: m.httpDuration.WithLabelValues(pattern),
		ok: m.httpRequests.WithLabelValues(pattern, "200")} // most answers: no look-up each
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w, rt: rt, start: time.Now()}
		h.ServeHTTP(sw, r)
		sw.count()
	})
}

// route holds one route's counters.
type route struct {
	m       *Metrics
	pattern string
	ok      prometheus.Counter
	dur     prometheus.Observer
}

type statusWriter struct {
	http.ResponseWriter
	rt      *route
	start   time.Time
	code    int
	counted bool
}

// count counts the request with its status and duration, once.
func (w *statusWriter) count() {
	if w.counted {
		return
	}
	w.counted = true
	if w.code == 0 {
		w.code = http.StatusOK
	}
	if w.code == http.StatusOK {
		w.rt.ok.Inc()
	} else {
		w.rt.m.httpRequests.WithLabelValues(w.rt.pattern, strconv.Itoa(w.code)).Inc()
	}
	w.rt.dur.Observe(time.Since(w.start).Seconds())
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// HijackedAnswer records the status of an answer the handler is about to
// write on a connection it hijacked, and counts it then: the client may
// scrape as soon as it has read it, before the handler returns.
func (w *statusWriter) HijackedAnswer(code int, _ []byte) {
	w.code = code
	w.count()
}

// Unwrap lets http.ResponseController reach the connection (deadlines).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Jobs counts ended jobs, and observes their duration and downtime from
// their events, as f signals them; until cancel is called.
func (m *Metrics) Jobs(f *fleet.Fleet) (cancel func()) {
	if m == nil {
		return func() {}
	}
	return f.Subscribe(func(e fleet.JobEvent) {
		if e.Type != fleet.JobEnded || e.Amends {
			return
		}
		// The count last: a scrape that sees the job ended sees its
		// duration and downtime too.
		defer m.jobsEnded.WithLabelValues(e.Result).Inc()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		evs, err := f.Store.JobEvents(ctx, e.JobID)
		if err != nil || len(evs) == 0 {
			return
		}
		m.jobDuration.Observe(evs[len(evs)-1].At.Sub(evs[0].At).Seconds())
		if ms := fleet.Downtime(protocol.Job{Result: e.Result, Events: evs}); ms != nil && *ms > 0 {
			m.downtime.Observe((time.Duration(*ms) * time.Millisecond).Seconds())
		}
	})
}

// field reads the sites from the store at each scrape.
type field struct {
	st          *store.Store
	onlineSince func() time.Time
	log         *slog.Logger
}

var (
	sitesDesc           = prometheus.NewDesc(ns+"_sites", "Sites by product, installed version and state (other: a product or version with no release here).", []string{"product", "version", "state"}, nil)
	rolloutsDesc        = prometheus.NewDesc(ns+"_rollouts", "Rollouts by state.", []string{"state"}, nil)
	rolloutFailuresDesc = prometheus.NewDesc(ns+"_rollout_failures", "Failures (jobs failed or rolled back, sites that could not be planned) of the rollouts in each state.", []string{"state"}, nil)
	onlineDesc          = prometheus.NewDesc(ns+"_sites_online", "Sites that checked in within three poll intervals, by product.", []string{"product"}, nil)
)

func (c *field) Describe(ch chan<- *prometheus.Desc) {
	ch <- sitesDesc
	ch <- onlineDesc
	ch <- rolloutsDesc
	ch <- rolloutFailuresDesc
}

func (c *field) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sites, err := c.st.SiteStates(ctx)
	if err != nil {
		c.log.Warn("metrics: reading the sites failed", "err", err)
		ch <- prometheus.NewInvalidMetric(sitesDesc, err)
		return
	}
	known, err := c.st.ReleaseVersions(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(sitesDesc, err)
		return
	}
	type key struct{ product, version, state string }
	counts, online := map[key]float64{}, map[string]float64{}
	since := c.onlineSince()
	for _, s := range sites {
		k := key{"other", "other", "other"}
		if vs, ok := known[s.Product]; ok {
			k.product = s.Product
			if vs[s.Version] {
				k.version = s.Version
			} else if s.Version == "" {
				k.version = "none"
			}
		}
		if protocol.ValidState(s.State) {
			k.state = s.State
		}
		counts[k]++
		if s.LastSeen != nil && !s.LastSeen.Before(since) {
			online[k.product]++
		} else if _, ok := online[k.product]; !ok {
			online[k.product] = 0
		}
	}
	for k, n := range counts {
		ch <- prometheus.MustNewConstMetric(sitesDesc, prometheus.GaugeValue, n, k.product, k.version, k.state)
	}
	for p, n := range online {
		ch <- prometheus.MustNewConstMetric(onlineDesc, prometheus.GaugeValue, n, p)
	}
	rollouts, failures, err := c.st.RolloutCounts(ctx)
	if err != nil {
		c.log.Warn("metrics: reading the rollouts failed", "err", err)
		ch <- prometheus.NewInvalidMetric(rolloutsDesc, err)
		return
	}
	for _, state := range []string{protocol.RolloutRunning, protocol.RolloutPaused, protocol.RolloutCompleted, protocol.RolloutCancelled} {
		ch <- prometheus.MustNewConstMetric(rolloutsDesc, prometheus.GaugeValue, float64(rollouts[state]), state)
		ch <- prometheus.MustNewConstMetric(rolloutFailuresDesc, prometheus.GaugeValue, float64(failures[state]), state)
	}
}
