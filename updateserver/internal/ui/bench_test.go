package ui_test

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/store"
)

// BenchmarkFleetPage10000 measures the fleet view of 10,000 sites (20
// clients, each site with a job), over HTTP, signed in: the first page,
// one client's first page, and the last page.
func BenchmarkFleetPage10000(b *testing.B) {
	e := newEnv(b)
	const n = 10000
	now := time.Now()
	if _, err := e.d.Store.CreateEnrollToken(e.ctx, now, store.NewEnrollToken{Secret: "dle_bench", Client: "c", ExpiresAt: now.Add(time.Hour), Uses: n, By: "b"}); err != nil {
		b.Fatal(err)
	}
	// Enroll tokens are per client: enroll as client c, spread over 20
	// clients by a second token each.
	for c := range 20 {
		if _, err := e.d.Store.CreateEnrollToken(e.ctx, now, store.NewEnrollToken{Secret: fmt.Sprintf("dle_bench%02d", c), Client: fmt.Sprintf("client-%02d", c), ExpiresAt: now.Add(time.Hour), Uses: n, By: "b"}); err != nil {
			b.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			c := i % 20
			site := siteName(i)
			if _, err := e.d.Store.Enroll(e.ctx, now, fmt.Sprintf("dle_bench%02d", c), protocol.EnrollRequest{Site: site, Client: fmt.Sprintf("client-%02d", c), Product: "acme-erp"}, "dla_"+site); err != nil {
				b.Error(err)
				return
			}
			v := []string{"1.0.0", "1.1.0", "1.2.0"}[i%3]
			if _, err := e.d.Fleet.Checkin(e.ctx, site, protocol.CheckinRequest{InstalledVersion: v, Hostname: "host"}, 0); err != nil {
				b.Error(err)
			}
		}()
	}
	wg.Wait()
	jobs := make([]store.NewJob, n)
	for i := range jobs {
		jobs[i] = store.NewJob{ID: fmt.Sprintf("job-%d", i), Site: siteName(i), Product: "acme-erp", From: "1.0.0", To: "1.3.0", Target: "acme-erp/acme-erp-1.3.0.tar.gz", CreatedBy: "b"}
	}
	if _, err := e.d.Fleet.CreateJobs(e.ctx, jobs, store.Audit{Actor: "b", Action: "upgrade"}); err != nil {
		b.Fatal(err)
	}
	br := e.browser()
	br.signIn(e.admin)
	for _, bc := range []struct{ name, path string }{
		{"first", "/ui/"},
		{"client", "/ui/?client=client-07"},
		{"last", fmt.Sprintf("/ui/?page=%d", n/50)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				resp, body := br.get(bc.path)
				if resp.StatusCode != http.StatusOK || len(body) < 1000 {
					b.Fatalf("%s: %s", bc.path, resp.Status)
				}
			}
		})
	}
}
