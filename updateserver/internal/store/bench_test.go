package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
)

// BenchmarkCreateJobs1000 measures assigning a release to a client with
// 1000 sites: the transaction an upgrade trigger waits for.
func BenchmarkCreateJobs1000(b *testing.B) {
	s, err := Open(context.Background(), b.TempDir()+"/s.db")
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	now := time.Now()
	if _, err := s.CreateEnrollToken(ctx, now, NewEnrollToken{Secret: "tok", Client: "c", ExpiresAt: now.Add(time.Hour), Uses: 1000, By: "b"}); err != nil {
		b.Fatal(err)
	}
	for i := range 1000 {
		if _, err := s.Enroll(ctx, now, "tok", protocol.EnrollRequest{Site: fmt.Sprintf("s%04d", i), Client: "c", Product: "p"}, fmt.Sprintf("cred%d", i)); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for n := range b.N {
		jobs := make([]NewJob, 1000)
		for i := range jobs {
			jobs[i] = NewJob{ID: fmt.Sprintf("job-%d-%d", n, i), Site: fmt.Sprintf("s%04d", i), Product: "p", To: "1.0.0", Target: "p/p-1.0.0.tar.gz", CreatedBy: "b"}
		}
		if err := s.CreateJobs(ctx, time.Now(), jobs, Audit{Actor: "b", Action: "upgrade"}); err != nil {
			b.Fatal(err)
		}
	}
}
