//go:build unix

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

// BenchmarkJobReports2000 measures the agents' job-event reports after an
// upgrade: 2000 sites each report their job's events (downloading, then
// committed: the job starts and ends) at once through Fleet.Events, as
// the agents of a trigger round do. reports/s is how many reports the
// store's writer applies a second. On SQLite, or on PostgreSQL with
// TEST_POSTGRES_DSN set.
func BenchmarkJobReports2000(b *testing.B) { benchJobReports(b, 2000) }

func benchJobReports(b *testing.B, sites int) {
	ctx := context.Background()
	s, err := store.Open(ctx, storetest.Path(b))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	f := &Fleet{Store: s, PollInterval: time.Minute, JobTimeout: time.Hour}
	now := time.Now()
	if _, err := s.CreateEnrollToken(ctx, now, store.NewEnrollToken{Secret: "tok", Client: "c", ExpiresAt: now.Add(time.Hour), Uses: sites, By: "b"}); err != nil {
		b.Fatal(err)
	}
	names := make([]string, sites)
	parallel(b, sites, func(i int) error {
		names[i] = fmt.Sprintf("s%05d", i)
		_, err := s.Enroll(ctx, now, "tok", protocol.EnrollRequest{Site: names[i], Client: "c", Product: "p"}, "cred"+names[i])
		return err
	})
	var took time.Duration
	defer func() {
		b.ReportMetric(float64(sites*b.N)/took.Seconds(), "reports/s")
	}()
	b.ResetTimer()
	for n := range b.N {
		b.StopTimer()
		jobs := make([]store.NewJob, sites)
		for i := range jobs {
			jobs[i] = store.NewJob{ID: fmt.Sprintf("job-%d-%d", n, i), Site: names[i], Product: "p", To: fmt.Sprintf("1.%d.0", n), Target: "t", CreatedBy: "b", Now: true}
		}
		if _, err := f.CreateJobs(ctx, jobs, store.Audit{Actor: "b", Action: "upgrade"}); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		t0 := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, sites)
		for i := range sites {
			wg.Add(1)
			go func() {
				defer wg.Done()
				at := time.Now()
				resp, err := f.Events(ctx, names[i], []protocol.Event{
					{JobID: jobs[i].ID, Seq: 1, State: protocol.StateDownloading, At: at},
					{JobID: jobs[i].ID, Seq: 2, State: protocol.StateCommitted, At: at},
				})
				if err == nil && resp.Accepted != 2 {
					err = fmt.Errorf("site %s: %d events accepted, want 2", names[i], resp.Accepted)
				}
				if err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		took += time.Since(t0)
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
	}
}
