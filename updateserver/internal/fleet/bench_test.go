package fleet

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/store"
)

// BenchmarkCreateJobs1000 measures assigning a release to a client with
// 1000 sites: the transaction an upgrade trigger waits for.
func BenchmarkCreateJobs1000(b *testing.B) {
	s, err := store.Open(context.Background(), b.TempDir()+"/s.db")
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	f := &Fleet{Store: s, PollInterval: time.Second, JobTimeout: time.Hour}
	ctx := context.Background()
	now := time.Now()
	if _, err := s.CreateEnrollToken(ctx, now, store.NewEnrollToken{Secret: "tok", Client: "c", ExpiresAt: now.Add(time.Hour), Uses: 1000, By: "b"}); err != nil {
		b.Fatal(err)
	}
	for i := range 1000 {
		if _, err := s.Enroll(ctx, now, "tok", protocol.EnrollRequest{Site: fmt.Sprintf("s%04d", i), Client: "c", Product: "p"}, fmt.Sprintf("cred%d", i)); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for n := range b.N {
		jobs := make([]store.NewJob, 1000)
		for i := range jobs {
			jobs[i] = store.NewJob{ID: fmt.Sprintf("job-%d-%d", n, i), Site: fmt.Sprintf("s%04d", i), Product: "p", To: "1.0.0", Target: "p/p-1.0.0.tar.gz", CreatedBy: "b"}
		}
		if _, err := f.CreateJobs(ctx, jobs, store.Audit{Actor: "b", Action: "upgrade"}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFollowPass1000 measures a release reaching 1000 sites that
// follow its channel: the pass that plans them and creates their jobs
// (one transaction), from a publish to every follower's job.
func BenchmarkFollowPass1000(b *testing.B) {
	s, err := store.Open(context.Background(), b.TempDir()+"/s.db")
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	f := &Fleet{Store: s, PollInterval: time.Second, JobTimeout: time.Hour, Log: slog.New(slog.DiscardHandler)}
	ctx := context.Background()
	now := time.Now()
	if _, err := s.CreateEnrollToken(ctx, now, store.NewEnrollToken{Secret: "tok", Client: "c", ExpiresAt: now.Add(time.Hour), Uses: 1000, By: "b"}); err != nil {
		b.Fatal(err)
	}
	var names []string
	for i := range 1000 {
		name := fmt.Sprintf("s%04d", i)
		names = append(names, name)
		if _, err := s.Enroll(ctx, now, "tok", protocol.EnrollRequest{Site: name, Client: "c", Product: "p"}, fmt.Sprintf("cred%d", i)); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.SetFollow(ctx, now, names, "stable", "", store.Audit{Actor: "b", Action: "sites.follow"}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for n := range b.N {
		b.StopTimer()
		v := fmt.Sprintf("1.0.%d", n)
		r := protocol.Release{Product: "p", Version: v, Target: "p/p-" + v + ".tar.gz", SHA256: "00", Length: 1, Channels: []string{"stable"}, PublishedAt: now, PublishedBy: "b"}
		if err := s.PublishRelease(ctx, store.Publish{Release: r, Audit: store.Audit{Actor: "b", Action: "release.publish"}}); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		jobs, err := f.followPass(ctx, "p", nil)
		if err != nil || len(jobs) != 1000 {
			b.Fatalf("%d jobs, %v", len(jobs), err)
		}
	}
}
