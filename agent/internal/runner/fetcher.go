package runner

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/dropless/dropless/agent/internal/fetch"
	"github.com/dropless/dropless/pkg/protocol"
)

// tufFetcher is the engine's Fetcher (engine.Fetcher) on the TUF client
// (fetch.Client): a bootstrap (once) and a refresh of the repository
// before every target look-up, and nothing but what the client verified.
//
// What it caches: only the *fetch.Target its last Target call resolved.
// The engine asks for a target's metadata, checks it against the
// assignment, then downloads it; Download takes that very target (the
// metadata the engine checked) instead of refreshing the repository a
// second time a moment later, and forgets it. A Download of another path,
// or without a Target before it, resolves the path afresh. Everything on
// disk is the client's: the trusted metadata in <data_dir>/tuf (TUFDir)
// and, while a download is interrupted, dst+".part", from which the next
// Download resumes.
type tufFetcher struct {
	c      *fetch.Client
	log    *slog.Logger
	bootMu *sync.Mutex // held around Bootstrap (see Runner.checkRoot)
	// cache keeps downloaded bundles as bases for delta updates (delta.go);
	// nil: no deltas.
	cache *bundleCache

	mu       sync.Mutex
	resolved *fetch.Target // from the last Target call, taken by Download
}

func (f *tufFetcher) resolve(ctx context.Context, path string) (*fetch.Target, error) {
	f.bootMu.Lock()
	err := f.c.Bootstrap(ctx)
	f.bootMu.Unlock()
	if err != nil {
		return nil, err
	}
	if err := f.c.Refresh(ctx); err != nil {
		return nil, err
	}
	return f.c.Target(ctx, path)
}

func (f *tufFetcher) Target(ctx context.Context, path string) (int64, string, protocol.TargetCustom, error) {
	t, err := f.resolve(ctx, path)
	f.mu.Lock()
	f.resolved = t
	f.mu.Unlock()
	if err != nil {
		return 0, "", protocol.TargetCustom{}, err
	}
	custom, err := protocol.ParseTargetCustom(t.Custom)
	if err != nil {
		return 0, "", custom, fmt.Errorf("target %s: %w", path, err)
	}
	sum, ok := t.Hashes["sha256"]
	if !ok {
		return 0, "", custom, fmt.Errorf("target %s has no sha256 in its signed metadata", path)
	}
	return t.Length, sum, custom, nil
}

func (f *tufFetcher) Download(ctx context.Context, path, dst string) error {
	f.mu.Lock()
	t := f.resolved
	f.resolved = nil
	f.mu.Unlock()
	if t == nil || t.Path != path {
		var err error
		if t, err = f.resolve(ctx, path); err != nil {
			return err
		}
	}
	return f.downloadVia(ctx, t, dst)
}
