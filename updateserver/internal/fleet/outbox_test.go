package fleet

import (
	"errors"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/store"
)

// TestOutboxInTheJobTransaction: Outbox sees the signals of each job
// transaction before it commits, and when it fails (the webhook outbox
// cannot be written) the change it would report is not made either.
func TestOutboxInTheJobTransaction(t *testing.T) {
	tf := newTestFleet(t)
	tf.publish("acme-erp", "1.1.0", "")
	tf.enroll("s1", "acme", "1.0.0", "0.9.0")
	var seen []JobEventType
	fail := false
	tf.Outbox = func(_ *store.JobTx, _ time.Time, sigs []JobEvent) error {
		if fail {
			return errors.New("disk full")
		}
		for _, s := range sigs {
			seen = append(seen, s.Type)
		}
		return nil
	}
	id := tf.upgrade(protocol.UpgradeRequest{Site: "s1", To: "1.1.0"})[0].ID
	fail = true
	if _, err := tf.Events(tf.ctx, "s1", []protocol.Event{{JobID: id, Seq: 1, State: protocol.StateDownloading, At: tf.now()}}); err == nil {
		t.Fatal("events stored although their outbox rows could not be written")
	}
	tf.wantJob("s1", id, protocol.ResultPending, "")
	fail = false
	tf.events("s1", id, 1, protocol.StateDownloading)
	tf.wantJob("s1", id, protocol.ResultRunning, "")
	if len(seen) != 2 || seen[0] != JobCreated || seen[1] != JobStarted {
		t.Errorf("Outbox saw %v, want job.created then job.started", seen)
	}
}
