package fleet

import (
	"sync"
	"testing"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/store/storetest"
)

// TestConcurrentUpgradesLeaveOneOpenJob: two fleets on one store (two
// server replicas on PostgreSQL, two processes on one SQLite file) upgrade
// the same site from many goroutines at once. Each upgrade supersedes the
// pending job before it, so the site ends with exactly one open job, never
// two: "the site has no open job" is read and acted on atomically.
func TestConcurrentUpgradesLeaveOneOpenJob(t *testing.T) {
	path := storetest.Path(t)
	a := newTestFleetOn(t, path)
	b := newTestFleetOn(t, path)
	a.publish("acme-erp", "1.0.0", "")
	a.publish("acme-erp", "1.1.0", "")
	a.enroll("s1", "acme", "1.0.0", "0.9.0")
	const n = 24
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		tf := a
		if i%2 == 1 {
			tf = b
		}
		wg.Go(func() {
			_, err := tf.Upgrade(tf.ctx, protocol.UpgradeRequest{Site: "s1", To: "1.1.0"}, "support")
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	p, err := a.History(a.ctx, "s1", "", 50)
	if err != nil {
		t.Fatal(err)
	}
	open := 0
	for _, j := range p.Jobs {
		if j.Result == protocol.ResultPending || j.Result == protocol.ResultRunning {
			open++
		}
	}
	if len(p.Jobs) != n || open != 1 {
		t.Fatalf("%d jobs, %d of them open; want %d jobs, 1 open", len(p.Jobs), open, n)
	}
}
