package publish

import (
	"os"
	"sync"
	"sync/atomic"
)

// syncStep is how much a staged upload grows between two background
// fsyncs. (A variable so that tests can make it small.)
var syncStep int64 = 128 << 20

// syncBehind makes a staged file durable in steps while it is written:
// once syncStep more bytes were written since the last fsync began,
// another starts on a goroutine of its own (one at a time). The write-
// behind already has the kernel write the pages out as they come, but
// only an fsync has the disk (a virtual disk: its host) make them durable,
// and the final fsync used to pay for the whole upload at once: 0.3-0.5 s
// per GiB here when other processes write, with the client waiting. Now
// it pays for the last step. Every fsync's error is kept: the one that
// fails may be a background one, and the kernel reports it only once.
type syncBehind struct {
	f       *os.File
	started int64 // what the file held when the last fsync began (writer only)
	busy    atomic.Bool
	wg      sync.WaitGroup
	mu      sync.Mutex
	err     error
}

func newSyncBehind(f *os.File) *syncBehind { return &syncBehind{f: f} }

// Wrote tells that the file now holds end bytes.
func (s *syncBehind) Wrote(end int64) {
	if end-s.started < syncStep || !s.busy.CompareAndSwap(false, true) {
		return
	}
	s.started = end
	s.wg.Go(func() {
		s.keep(s.f.Sync())
		s.busy.Store(false)
	})
}

func (s *syncBehind) keep(err error) {
	if err == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = err
	}
}

// Sync makes the whole file durable: it waits for the fsync in flight,
// fsyncs once more and returns the first error of any of them.
func (s *syncBehind) Sync() error {
	s.wg.Wait()
	s.keep(s.f.Sync())
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}
