//go:build unix

package engine

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestPrefetchThenRunUsesTheBundle: a job waiting for its window has its
// bundle downloaded ahead without the app being touched; when the job
// runs, the repository can be unreachable and the upgrade still succeeds
// from the bundle downloaded ahead.
func TestPrefetchThenRunUsesTheBundle(t *testing.T) {
	s := newSite(t)
	e := s.open(t)
	s.install(t, e, s.release(t, "1.0.0"))
	a := s.release(t, "1.1.0")

	if err := e.Prefetch(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	if v, ok := s.running(); v != "1.0.0" || !ok {
		t.Fatalf("after the download ahead the app runs %q (healthy %v), want 1.0.0 untouched", v, ok)
	}
	if got := s.current(t); got != "1.0.0" {
		t.Fatalf("current is %q after the download ahead", got)
	}
	ahead, _ := os.ReadDir(aheadDir(s.DataDir))
	if len(ahead) != 1 {
		t.Fatalf("ahead/ holds %d files, want the one bundle", len(ahead))
	}
	// A second call for the same job downloads nothing more.
	n := len(s.Fetcher.downloaded)
	if err := e.Prefetch(context.Background(), a); err != nil || len(s.Fetcher.downloaded) != n {
		t.Fatalf("second prefetch: %v, %d downloads (want %d)", err, len(s.Fetcher.downloaded), n)
	}

	// The window opens; the repository is down by then.
	tg := s.Fetcher.Targets[a.Target]
	tg.Err = "connection refused"
	s.Fetcher.Targets[a.Target] = tg
	s.install(t, e, a)
	s.checkConsistent(t, e, "1.1.0")
	if _, err := os.Stat(aheadDir(s.DataDir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ahead/ still there after the job: %v", err)
	}
}

// TestPrefetchRefusesWhatTheJobWouldRefuse: the trust checks come before
// any byte is downloaded ahead.
func TestPrefetchRefusesWhatTheJobWouldRefuse(t *testing.T) {
	s := newSite(t)
	e := s.open(t)
	s.install(t, e, s.release(t, "1.0.0"))
	a := s.release(t, "2.0.0", "upgrade_from=>= 1.5")
	n := len(s.Fetcher.downloaded)
	err := e.Prefetch(context.Background(), a)
	if !errors.Is(err, ErrUntrusted) {
		t.Fatalf("prefetch of a release whose upgrade_from excludes 1.0.0: %v, want ErrUntrusted", err)
	}
	other := a
	other.Product = "someone-else"
	if err := e.Prefetch(context.Background(), other); !errors.Is(err, ErrUntrusted) {
		t.Fatalf("prefetch of another product: %v, want ErrUntrusted", err)
	}
	if len(s.Fetcher.downloaded) != n {
		t.Errorf("refused prefetches downloaded %v", s.Fetcher.downloaded[n:])
	}
	if _, err := os.Stat(filepath.Join(s.DataDir, "ahead")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ahead/ made for a refused prefetch: %v", err)
	}
}
