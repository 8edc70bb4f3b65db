package store

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/store/storetest"
)

// BenchmarkPostgresConcurrentWrites: 500 goroutines, each an agent of its
// own site, write at once through two stores on one PostgreSQL database
// (two server replicas), as agents report during a rollout: "checkins" is
// a changed check-in report (a site's row), "events" a job event and its
// job's progress (WithJobs), "mixed" half of the writers one, half the
// other. One op is one write transaction; writes/s is the rate over all
// of them.
func BenchmarkPostgresConcurrentWrites(b *testing.B) {
	const writers = 500
	for _, kind := range []string{"checkins", "events", "mixed"} {
		b.Run(kind, func(b *testing.B) {
			path := storetest.Schema(b) // skips without PostgreSQL
			ctx := context.Background()
			var stores [2]*Store
			for i := range stores {
				s, err := Open(ctx, path)
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { s.Close() })
				stores[i] = s
			}
			now := time.Now()
			err := stores[0].tx(ctx, func(tx *sql.Tx) error {
				for i := range writers {
					site := fmt.Sprintf("s%03d", i)
					if _, err := tx.Exec(`INSERT INTO sites (site, client, product, credential_hash, enrolled_at) VALUES (?, 'c', 'p', ?, ?)`,
						site, "h"+site, formatTime(now)); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
			err = stores[0].WithJobs(ctx, func(t *JobTx) error {
				for i := range writers {
					site := fmt.Sprintf("s%03d", i)
					if err := t.InsertJob(NewJob{ID: "j" + site, Site: site, Product: "p", From: "1", To: "2", Target: "t", CreatedBy: "b"}, now); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
			var left atomic.Int64
			left.Store(int64(b.N))
			var wg sync.WaitGroup
			errs := make(chan error, writers)
			b.ResetTimer()
			start := time.Now()
			for i := range writers {
				s, site := stores[i%2], fmt.Sprintf("s%03d", i)
				wg.Go(func() {
					for n := 1; left.Add(-1) >= 0; n++ {
						var err error
						at := time.Now()
						if kind == "checkins" || (kind == "mixed" && i%4 < 2) {
							_, err = s.Checkin(ctx, at, site, protocol.CheckinRequest{InstalledVersion: "1", State: "idle", Hostname: fmt.Sprintf("h%d", n)})
						} else {
							err = s.WithJobs(ctx, func(t *JobTx) error {
								if _, err := t.AddEvent(protocol.Event{JobID: "j" + site, Seq: int64(n), State: "downloading", At: at}, at); err != nil {
									return err
								}
								return t.Progress("j"+site, at)
							})
						}
						if err != nil {
							errs <- err
							return
						}
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "writes/s")
			close(errs)
			for err := range errs {
				b.Fatal(err)
			}
		})
	}
}
