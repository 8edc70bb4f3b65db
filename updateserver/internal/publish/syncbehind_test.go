package publish

import (
	"os"
	"path/filepath"
	"testing"
)

// TestSyncBehindKeepsErrors: an fsync that fails in the background fails
// the final Sync even when the final fsync itself succeeds (the kernel
// reports a writeback error to one fsync only: losing it would
// acknowledge an upload that is not on disk).
func TestSyncBehindKeepsErrors(t *testing.T) {
	r, w, err := os.Pipe() // fsync of a pipe fails (EINVAL)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	sb := newSyncBehind(w)
	sb.Wrote(syncStep) // starts a background fsync, which fails
	sb.wg.Wait()
	good, err := os.Create(filepath.Join(t.TempDir(), "staged"))
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	sb.f = good // the final fsync succeeds
	if err := sb.Sync(); err == nil {
		t.Fatal("Sync succeeded after a background fsync failed")
	}

	sb = newSyncBehind(good)
	sb.Wrote(syncStep - 1) // not a step yet: no fsync
	sb.Wrote(syncStep)
	if err := sb.Sync(); err != nil {
		t.Fatalf("Sync of a good file: %v", err)
	}
}

// smallSyncSteps makes the staged uploads of a test fsync in the
// background every 1 MiB, so that small uploads take many steps.
func smallSyncSteps(t *testing.T) {
	old := syncStep
	syncStep = 1 << 20
	t.Cleanup(func() { syncStep = old })
}
