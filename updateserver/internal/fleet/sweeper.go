package fleet

import (
	"context"
	"time"
)

// SweepStaleJobs fails jobs without progress for JobTimeout.
func (f *Fleet) SweepStaleJobs(ctx context.Context) error {
	return f.sweep(ctx, f.now(), f.JobTimeout)
}

// RunSweeper sweeps every interval until ctx ends.
func (f *Fleet) RunSweeper(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := f.SweepStaleJobs(ctx); err != nil && ctx.Err() == nil {
			f.Log.Error("sweeping stale jobs failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
