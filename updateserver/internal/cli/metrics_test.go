package cli_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/daemon"
)

// scrape reads /metrics with token and returns each sample's value by
// its name and labels, as "name{k=v,...}".
func (s *server) scrape(t *testing.T, token string) map[string]float64 {
	t.Helper()
	code, body := s.api("GET", "/metrics", token, nil)
	if code != 200 {
		t.Fatalf("GET /metrics: %d %s", code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics is not the text format: %v", err)
	}
	out := map[string]float64{}
	for name, f := range fams {
		for _, m := range f.Metric {
			var ls []string
			for _, l := range m.Label {
				ls = append(ls, l.GetName()+"="+l.GetValue())
			}
			key := name + "{" + strings.Join(ls, ",") + "}"
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				out[key] = m.Counter.GetValue()
			case dto.MetricType_GAUGE:
				out[key] = m.Gauge.GetValue()
			case dto.MetricType_HISTOGRAM:
				out[key+"count"] = float64(m.Histogram.GetSampleCount())
				out[key+"sum"] = m.Histogram.GetSampleSum()
			}
		}
	}
	return out
}

// TestMetrics: after releases and a rolled-back job the scrape says what
// happened; /metrics needs a token unless serve --metrics-public.
func TestMetrics(t *testing.T) {
	s := startServer(t)
	viewer := s.newToken(protocol.RoleViewer)
	if code, _ := s.api("GET", "/metrics", "", nil); code != 401 {
		t.Errorf("/metrics without a token: %d, want 401", code)
	}
	s.publish(t, "1.0.0", "")
	s.publish(t, "1.1.0", ">= 1.0")
	support := s.newToken(protocol.RoleSupport)
	tok := strings.TrimSpace(s.mustCLI(support, "enroll-token", "create", "--client", "acme", "--uses", "2"))
	a := s.enroll(t, tok, "acme-prod", "acme")
	s.enroll(t, tok, "acme-never-seen", "acme")
	ctx := context.Background()
	report := protocol.CheckinRequest{InstalledVersion: "1.0.0", AgentVersion: "test", OS: "linux", Arch: "amd64", Hostname: "h", State: protocol.StateIdle}
	if _, err := a.Checkin(ctx, report, 0); err != nil {
		t.Fatal(err)
	}
	s.mustCLI(support, "upgrade", "--site", "acme-prod", "--to", "1.1.0", "--now")
	job := s.history(t, support, "acme-prod")[0].ID
	t0 := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	if _, err := a.SendEvents(ctx, []protocol.Event{{JobID: job, Seq: 1, State: "downloading", At: t0},
		{JobID: job, Seq: 2, State: "stopping", At: t0.Add(10 * time.Second)},
		{JobID: job, Seq: 3, State: "rolled_back", Message: "health check failed", At: t0.Add(40 * time.Second)}}); err != nil {
		t.Fatal(err)
	}
	// A body with a Content-Length is spliced; the answer, written on the
	// hijacked connection, is counted all the same.
	if code, b := s.api("POST", "/api/v1/uploads", s.Admin, strings.NewReader("not a bundle")); code != 400 {
		t.Errorf("upload of a non-bundle: %d %s, want 400", code, b)
	}
	var m map[string]float64
	waitFor(t, func() bool {
		m = s.scrape(t, viewer)
		return m["updateserver_jobs_ended_total{result=rolled_back}"] == 1
	})
	rs := s.releases(viewer)
	want := map[string]float64{
		"updateserver_jobs_ended_total{result=succeeded}":                                   0,
		"updateserver_job_duration_seconds{}count":                                          1,
		"updateserver_job_duration_seconds{}sum":                                            40,
		"updateserver_job_downtime_seconds{}count":                                          1,
		"updateserver_job_downtime_seconds{}sum":                                            30,
		"updateserver_sites{product=acme-erp,state=idle,version=1.0.0}":                     1,
		"updateserver_sites{product=acme-erp,state=idle,version=none}":                      1,
		"updateserver_sites_online{product=acme-erp}":                                       1,
		"updateserver_checkins_total{}":                                                     1,
		"updateserver_long_polls_held{}":                                                    0,
		"updateserver_lease_held{lease=rollouts}":                                           1,
		"updateserver_lease_held{lease=tuf-refresh}":                                        1,
		"updateserver_releases_published_total{}":                                           2,
		"updateserver_publish_bytes_total{}":                                                float64(rs[0].Length + rs[1].Length),
		"updateserver_http_requests_total{code=200,route=POST /api/v1/agent/events}":        1,
		"updateserver_http_requests_total{code=401,route=GET /metrics}":                     1,
		"updateserver_http_requests_total{code=400,route=POST /api/v1/uploads}":             1, // answered on the hijacked connection
		"updateserver_http_request_duration_seconds{route=POST /api/v1/agent/checkin}count": 1,
		"updateserver_webhook_deliveries_total{outcome=delivered}":                          0,
	}
	for k, v := range want {
		if got, ok := m[k]; !ok || got != v {
			t.Errorf("%s = %v (present %t), want %v", k, got, ok, v)
		}
	}
	for k := range m {
		if strings.Contains(k, "acme-prod") || strings.Contains(k, "acme-never-seen") || strings.Contains(k, "client=") {
			t.Errorf("a site or client name is a label: %s", k)
		}
	}

	pub := startServer(t, func(c *daemon.Config) { c.MetricsPublic = true })
	if code, _ := pub.api("GET", "/metrics", "", nil); code != 200 {
		t.Errorf("/metrics with --metrics-public and no token: %d, want 200", code)
	}
}
