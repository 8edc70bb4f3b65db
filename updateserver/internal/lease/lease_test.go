package lease

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/dropless/dropless/updateserver/internal/store"
	"github.com/dropless/dropless/updateserver/internal/store/storetest"
)

// replicaJob counts how many replicas run a job at once.
type replicaJob struct {
	mu          sync.Mutex
	running     map[string]bool
	maxAtOnce   int
	started     chan string
	ranByHolder map[string]int
}

func (j *replicaJob) run(holder string) func(context.Context) {
	return func(ctx context.Context) {
		j.mu.Lock()
		j.running[holder] = true
		j.ranByHolder[holder]++
		j.maxAtOnce = max(j.maxAtOnce, len(j.running))
		j.mu.Unlock()
		j.started <- holder
		<-ctx.Done()
		j.mu.Lock()
		delete(j.running, holder)
		j.mu.Unlock()
	}
}

// TestRunOneReplicaAtATime: two replicas on one store run a leased job
// one at a time; when the holder stops, the other takes over; when the
// holder loses its lease, its job is stopped.
func TestRunOneReplicaAtATime(t *testing.T) {
	st, err := store.Open(context.Background(), storetest.Path(t))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	job := &replicaJob{running: map[string]bool{}, started: make(chan string, 10), ranByHolder: map[string]int{}}
	ttl := 600 * time.Millisecond
	start := func(holder string) (*Runner, context.CancelFunc, chan struct{}) {
		r := &Runner{Store: st, Holder: holder, TTL: ttl}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			r.Run(ctx, "sweeper", job.run(holder))
		}()
		return r, cancel, done
	}
	ra, stopA, doneA := start("a")
	if got := <-job.started; got != "a" {
		t.Fatalf("%s started first", got)
	}
	rb, stopB, doneB := start("b")
	defer func() { stopB(); <-doneB }()
	// b tries several times (every ttl/3) while a holds and renews the
	// lease.
	time.Sleep(ttl)
	if !ra.Held()["sweeper"] || rb.Held()["sweeper"] {
		t.Fatalf("held: a %v, b %v", ra.Held(), rb.Held())
	}
	// a stops (a replica shutting down): b takes over.
	stopA()
	<-doneA
	if got := <-job.started; got != "b" {
		t.Fatalf("%s took over, want b", got)
	}
	// Someone else takes b's lease (b stalled past its TTL, say): b's
	// next renewal fails and its job is stopped.
	if err := st.ReleaseLease(context.Background(), "sweeper", "b"); err != nil {
		t.Fatal(err)
	}
	if ok, err := st.AcquireLease(context.Background(), time.Now(), "sweeper", "c", time.Hour); !ok || err != nil {
		t.Fatal(ok, err)
	}
	for {
		job.mu.Lock()
		running := job.running["b"]
		job.mu.Unlock()
		if !running {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if rb.Held()["sweeper"] {
		t.Fatal("b still says it holds the lease c took")
	}
	job.mu.Lock()
	defer job.mu.Unlock()
	if job.maxAtOnce != 1 {
		t.Fatalf("%d replicas ran the job at once", job.maxAtOnce)
	}
}

// TestAlwaysHoldsWithoutStore: a single server runs the job at once.
func TestAlwaysHoldsWithoutStore(t *testing.T) {
	ran := false
	ctx, cancel := context.WithCancel(context.Background())
	r := Always()
	r.Run(ctx, "x", func(context.Context) { ran = true; cancel() })
	if !ran || !r.Held()["x"] {
		t.Fatal("Always did not run the job")
	}
}
