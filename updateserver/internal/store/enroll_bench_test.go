package store

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/store/storetest"
)

// BenchmarkEnroll: b.N agents enroll at once, 256 at a time (as the
// fleet run's enroll processes and thousands of sites installed the same
// day do), through one store: one op is one enrollment (a site's row, its
// token's use, its audit entry). With -benchtime=100000x it is the
// 100,000-site fleet's enrollment; enrollments/s is the rate.
func BenchmarkEnroll(b *testing.B) {
	const parallel = 256
	ctx := context.Background()
	s, err := Open(ctx, storetest.Path(b))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	now := time.Now()
	if _, err := s.CreateEnrollToken(ctx, now, NewEnrollToken{Secret: "tok", Client: "c", ExpiresAt: now.Add(time.Hour), Uses: max(b.N, 1), By: "b"}); err != nil {
		b.Fatal(err)
	}
	var next atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	b.ResetTimer()
	t0 := time.Now()
	for range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				site := fmt.Sprintf("s%06d", i)
				if _, err := s.Enroll(ctx, now, "tok", protocol.EnrollRequest{Site: site, Client: "c", Product: "p", Hostname: "h"}, "cred"+site); err != nil {
					failed.Store(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(t0)
	b.StopTimer()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	var n int
	if err := s.queryRow(ctx, `SELECT COUNT(*) FROM sites`).Scan(&n); err != nil || n != b.N {
		b.Fatalf("%d sites enrolled, want %d (%v)", n, b.N, err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "enrollments/s")
}
