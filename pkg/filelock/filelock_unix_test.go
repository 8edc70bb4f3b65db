//go:build unix && !aix && !(solaris && !illumos)

package filelock_test

import (
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/dropless/dropless/pkg/filelock"
)

// A lock released while this process forks children is not refused to the
// next Lock: a child holds a copy of the descriptor (and the flock) only
// until it execs. Without the grace, about one Lock in four was refused
// here (CI saw an agent engine refuse to reopen its own data dir).
func TestLockWhileForking(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.lock")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				exec.Command("true").Run()
			}
		})
	}
	defer func() { close(stop); wg.Wait() }()
	for i := range 2000 {
		f, err := filelock.Lock(path)
		if err != nil {
			t.Fatalf("Lock #%d after a release: %v", i, err)
		}
		f.Close()
	}
}
