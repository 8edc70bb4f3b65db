package fleet

import (
	"context"
	"fmt"
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
