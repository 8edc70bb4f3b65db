package fleet

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/store"
	"github.com/dropless/dropless/updateserver/internal/store/storetest"
)

// BenchmarkRollout10000 measures a rollout over one client's 10,000
// sites with max parallel 500: creating it (the request support waits
// for), and the scheduler's first pass, which plans the first 500 sites
// and assigns their jobs (the time from create to the first jobs
// handed out), and pausing it (from then on no new site starts: the
// scheduler's start transaction checks the rollout still runs). Each
// iteration cancels its rollout, untimed.
func BenchmarkRollout10000(b *testing.B) { benchRollout(b, 10000) }

// BenchmarkRollout100000 is BenchmarkRollout10000 over 100,000 sites, the
// most one rollout takes, on the tests' store (PostgreSQL with
// TEST_POSTGRES_DSN); sites-read-ms is the scheduler's read of the
// rollout's sites, once the first 500 started.
func BenchmarkRollout100000(b *testing.B) { benchRollout(b, 100000) }

func benchRollout(b *testing.B, sites int) {
	const parallel = 500
	ctx := context.Background()
	s, err := store.Open(ctx, storetest.Path(b))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	f := &Fleet{Store: s, PollInterval: time.Minute, JobTimeout: time.Hour}
	now := time.Now()
	for _, v := range []string{"1.0.0", "1.1.0"} {
		r := protocol.Release{Product: "p", Version: v, Target: "p/p-" + v + ".tar.gz", SHA256: "00", Length: 1, PublishedAt: now, PublishedBy: "b"}
		if err := s.PublishRelease(ctx, store.Publish{Release: r, Audit: store.Audit{Actor: "b", Action: "release.publish"}}); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := s.CreateEnrollToken(ctx, now, store.NewEnrollToken{Secret: "tok", Client: "c", ExpiresAt: now.Add(time.Hour), Uses: sites, By: "b"}); err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, sites)
	sem := make(chan struct{}, 512)
	for i := range sites {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			site := fmt.Sprintf("s%05d", i)
			if _, err := s.Enroll(ctx, now, "tok", protocol.EnrollRequest{Site: site, Client: "c", Product: "p"}, "cred"+site); err != nil {
				errs <- err
				return
			}
			if _, err := s.Checkin(ctx, now, site, protocol.CheckinRequest{InstalledVersion: "1.0.0", AgentVersion: "1.0.0", State: protocol.StateIdle}); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	var create, pass, pause, read time.Duration
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		ro, err := f.CreateRollout(ctx, protocol.RolloutRequest{Product: "p", Version: "1.1.0", Clients: []string{"c"}, MaxParallel: parallel, Waves: []float64{10, 100}}, "b")
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if _, err := f.ScheduleRollouts(ctx); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		if _, err := f.PauseRollout(ctx, ro.ID, "b"); err != nil {
			b.Fatal(err)
		}
		t3 := time.Now()
		create, pass, pause = create+t1.Sub(t0), pass+t2.Sub(t1), pause+t3.Sub(t2)
		b.StopTimer()
		t4 := time.Now()
		if _, err := s.RolloutSites(ctx, ro.ID); err != nil {
			b.Fatal(err)
		}
		read += time.Since(t4)
		got, err := f.Rollout(ctx, ro.ID)
		if err != nil || got.Started != parallel || got.Sites != sites {
			b.Fatalf("after one pass: %d of %d sites started, want %d (%v)", got.Started, got.Sites, parallel, err)
		}
		if _, err := f.CancelRollout(ctx, ro.ID, "b"); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(create.Milliseconds())/float64(b.N), "create-ms")
	b.ReportMetric(float64(pass.Milliseconds())/float64(b.N), "first-pass-ms")
	b.ReportMetric(float64(pause.Milliseconds())/float64(b.N), "pause-ms")
	b.ReportMetric(float64(read.Milliseconds())/float64(b.N), "sites-read-ms")
}
