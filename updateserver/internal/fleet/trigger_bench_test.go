//go:build unix

package fleet

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/store"
)

// BenchmarkTrigger10000 measures support's client-wide upgrade reaching
// 10,000 long-polling check-ins: from the Upgrade call (plan, create the
// jobs in one transaction) until every waiting Checkin has returned with
// its new job, recorded as handed out. Each iteration upgrades to a new
// version; the waiters of the next one (reporting the last job done) are
// set up untimed.
func BenchmarkTrigger10000(b *testing.B) { benchTrigger(b, 10000) }

// BenchmarkTrigger1000 is BenchmarkTrigger10000 with 1000 sites.
func BenchmarkTrigger1000(b *testing.B) { benchTrigger(b, 1000) }

func benchTrigger(b *testing.B, sites int) {
	ctx := context.Background()
	s, err := store.Open(ctx, b.TempDir()+"/s.db")
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	f := &Fleet{Store: s, PollInterval: time.Minute, JobTimeout: time.Hour}
	now := time.Now()
	publish := func(v string) {
		r := protocol.Release{Product: "p", Version: v, Target: "p/p-" + v + ".tar.gz", SHA256: "00", Length: 1, PublishedAt: now, PublishedBy: "b"}
		if err := s.PublishRelease(ctx, store.Publish{Release: r, Audit: store.Audit{Actor: "b", Action: "release.publish"}}); err != nil {
			b.Fatal(err)
		}
	}
	publish("1.0.0")
	if _, err := s.CreateEnrollToken(ctx, now, store.NewEnrollToken{Secret: "tok", Client: "c", ExpiresAt: now.Add(time.Hour), Uses: sites, By: "b"}); err != nil {
		b.Fatal(err)
	}
	names := make([]string, sites)
	parallel(b, sites, func(i int) error {
		names[i] = fmt.Sprintf("s%05d", i)
		if _, err := s.Enroll(ctx, now, "tok", protocol.EnrollRequest{Site: names[i], Client: "c", Product: "p"}, "cred"+names[i]); err != nil {
			return err
		}
		_, err := f.Checkin(ctx, names[i], protocol.CheckinRequest{InstalledVersion: "1.0.0", AgentVersion: "1.0.0", State: protocol.StateIdle}, 0)
		return err
	})
	last := make([]*protocol.JobStatus, sites)
	// On a shared machine wall time drifts with the neighbours' load;
	// the server's CPU time per trigger drifts less.
	var upgradeTook, cpu time.Duration
	defer func() {
		b.ReportMetric(float64(upgradeTook.Milliseconds())/float64(b.N), "upgrade-ms/op")
		b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N), "cpu-ms/op")
	}()
	b.ResetTimer()
	for n := range b.N {
		b.StopTimer()
		v := fmt.Sprintf("1.%d.0", n+1)
		publish(v)
		// Every site long-polls, reporting its last job done.
		var wg sync.WaitGroup
		got := make([]*protocol.Assignment, sites)
		errs := make(chan error, sites)
		for i := range sites {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := f.Checkin(ctx, names[i], protocol.CheckinRequest{InstalledVersion: "1.0.0", AgentVersion: "1.0.0", State: protocol.StateIdle, Job: last[i]}, time.Minute)
				if err != nil {
					errs <- err
				}
				got[i] = resp.Assignment
			}()
		}
		for f.hub.waiting() < sites {
			time.Sleep(10 * time.Millisecond)
		}
		b.StartTimer()
		t0, cpu0 := time.Now(), cpuTime()
		if _, err := f.Upgrade(ctx, protocol.UpgradeRequest{Client: "c", To: v, Now: true}, "b"); err != nil {
			b.Fatal(err)
		}
		upgradeTook += time.Since(t0)
		wg.Wait()
		cpu += cpuTime() - cpu0
		b.StopTimer()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
		for i, a := range got {
			if a == nil || a.Version != v {
				b.Fatalf("site %s got %+v, want its job to %s", names[i], a, v)
			}
			last[i] = &protocol.JobStatus{ID: a.JobID, From: a.From, To: a.Version, State: protocol.StateCommitted, Result: protocol.ResultSucceeded}
		}
		b.StartTimer()
	}
}

// parallel runs fn(0..n-1) 64 at a time (group commits), failing b on
// the first error.
func parallel(b *testing.B, n int, fn func(i int) error) {
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 64)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := fn(i); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

// cpuTime is the CPU time (user and system) this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
