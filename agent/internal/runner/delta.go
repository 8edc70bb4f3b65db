package runner

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"time"

	"github.com/dropless/dropless/agent/internal/config"
	"github.com/dropless/dropless/agent/internal/fetch"
	"github.com/dropless/dropless/pkg/atomicfile"
	"github.com/dropless/dropless/pkg/bundle"
	"github.com/dropless/dropless/pkg/delta"
	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/pkg/versions"
)

// BundlesDir is where, under data_dir, the agent keeps the bundles it
// downloaded, as bases for delta updates: bundles/<product>/<version>.
const BundlesDir = "bundles"

// bundleCache keeps the newest downloaded bundles of each product within a
// disk budget. What it holds is not trusted: a bundle rebuilt from a kept
// one is checked against the signed hashes before use.
type bundleCache struct {
	dir    string
	budget int64
}

// newBundleCache is the agent's bundle cache; nil when the config turns
// delta updates off (bundle_cache_size = "0").
func newBundleCache(cfg *config.Config) *bundleCache {
	if cfg.BundleCacheBytes() <= 0 {
		return nil
	}
	return &bundleCache{dir: filepath.Join(cfg.DataDir, BundlesDir), budget: cfg.BundleCacheBytes()}
}

func (b *bundleCache) path(product, version string) string {
	return filepath.Join(b.dir, fetch.LocalName(product), fetch.LocalName(version))
}

// versions lists the kept versions of product, newest first.
func (b *bundleCache) versions(product string) []string {
	entries, _ := os.ReadDir(filepath.Join(b.dir, fetch.LocalName(product)))
	var vs []string
	for _, e := range entries {
		if e.Type().IsRegular() && fetch.LocalName(e.Name()) == e.Name() {
			if _, err := versions.Parse(e.Name()); err == nil {
				vs = append(vs, e.Name())
			}
		}
	}
	versions.SortDescending(vs)
	return vs
}

// keep links (or copies) a verified bundle into the cache, then drops the
// oldest kept bundles until the cache fits its budget.
func (b *bundleCache) keep(product, version, src string) error {
	dst := b.path(product, version)
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return err
	}
	os.Remove(dst)
	if err := os.Link(src, dst); err != nil {
		if err := copyFile(src, dst); err != nil {
			return err
		}
	}
	return b.prune()
}

// prune removes the least recently kept bundles past the budget.
func (b *bundleCache) prune() error {
	type kept struct {
		path string
		size int64
		mod  time.Time
	}
	var all []kept
	filepath.WalkDir(b.dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				all = append(all, kept{p, fi.Size(), fi.ModTime()})
			}
		}
		return nil
	})
	sort.Slice(all, func(i, j int) bool { return all[i].mod.After(all[j].mod) })
	var used int64
	for _, k := range all {
		used += k.size
		if used > b.budget {
			if err := os.Remove(k.path); err != nil {
				return err
			}
		}
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	return atomicfile.Write(dst, 0o600, func(w io.Writer) error {
		_, err := io.Copy(w, in)
		return err
	})
}

// downloadDelta rebuilds the bundle of target t into dst from a kept
// bundle and a delta, both the delta and the rebuilt bundle verified: the
// delta by the TUF client as a target of its own, the bundle against t's
// signed sha256 and length. It returns the bytes the delta took on the
// wire; any error means: download the full bundle.
func (f *tufFetcher) downloadDelta(ctx context.Context, t *fetch.Target, dst string) (string, int64, error) {
	custom, err := protocol.ParseTargetCustom(t.Custom)
	if err != nil {
		return "", 0, err
	}
	want, ok := t.Hashes["sha256"]
	if !ok || len(t.Hashes) != 1 {
		return "", 0, errors.New("the target's signed hashes are not sha256 alone")
	}
	bases := slices.DeleteFunc(f.cache.versions(custom.Product), func(v string) bool { return v == custom.Version })
	if len(bases) == 0 {
		return "", 0, errors.New("no earlier bundle of this product is kept in data_dir")
	}
	var lastErr error
	for _, base := range bases {
		dp := protocol.DeltaTargetPath(custom.Product, custom.Version, base)
		dt, err := f.c.Target(ctx, dp)
		var fe *fetch.Error
		if errors.As(err, &fe) && fe.Kind == fetch.ErrNotFound {
			lastErr = fmt.Errorf("no delta from a kept bundle is published (tried from %s)", base)
			continue
		}
		if err != nil {
			return base, 0, fmt.Errorf("delta from %s: %w", base, err)
		}
		dc, err := protocol.ParseDeltaCustom(dt.Custom)
		if err != nil {
			return base, 0, err
		}
		if dc.Product != custom.Product || dc.Version != custom.Version || dc.From != base || dc.Result != t.Path {
			return base, 0, fmt.Errorf("delta %s is signed for %s %s from %s (%s), not for this download", dp, dc.Product, dc.Version, dc.From, dc.Result)
		}
		if dt.Length >= t.Length {
			return base, 0, fmt.Errorf("delta %s is no smaller than the bundle", dp)
		}
		return base, dt.Length, f.rebuild(ctx, dt, f.cache.path(custom.Product, base), t.Length, want, dst)
	}
	return "", 0, lastErr
}

// rebuild downloads delta target dt (verified) and applies it to the kept
// bundle basePath, writing the bundle to dst only once its length and
// sha256 are the signed ones.
func (f *tufFetcher) rebuild(ctx context.Context, dt *fetch.Target, basePath string, wantLen int64, wantSHA, dst string) error {
	deltaFile := dst + ".delta"
	defer os.Remove(deltaFile)
	if _, err := f.c.Download(ctx, dt, deltaFile); err != nil {
		return err
	}
	baseTar, err := os.CreateTemp(filepath.Dir(dst), ".base-*.tar")
	if err != nil {
		return err
	}
	defer func() { baseTar.Close(); os.Remove(baseTar.Name()) }()
	baseIn, err := os.Open(basePath)
	if err != nil {
		return err
	}
	lim := bundle.DefaultLimits()
	baseSize, err := delta.Gunzip(&limitWriter{w: baseTar, left: lim.MaxTotalSize * 2}, baseIn)
	baseIn.Close()
	if err != nil {
		return fmt.Errorf("the kept bundle %s does not decompress: %w", filepath.Base(basePath), err)
	}
	d, err := os.Open(deltaFile)
	if err != nil {
		return err
	}
	defer d.Close()
	tmp := dst + ".rebuild"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	h := sha256.New()
	// The tar may be a little larger than the sum of its files (headers,
	// padding): twice the bundle limit bounds it.
	n, err := delta.Apply(io.MultiWriter(out, h), baseTar, baseSize, ctxReader{ctx, d}, delta.Limits{MaxTar: lim.MaxTotalSize * 2, MaxOut: wantLen})
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); n != wantLen || got != wantSHA {
		return fmt.Errorf("the rebuilt bundle (%d bytes, sha256 %s) is not the signed one (%d bytes, sha256 %s)", n, got, wantLen, wantSHA)
	}
	return atomicfile.Rename(tmp, dst)
}

// limitWriter refuses to write more than left bytes.
type limitWriter struct {
	w    io.Writer
	left int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.left {
		return 0, errors.New("the kept bundle decompresses to more than a bundle may hold")
	}
	l.left -= int64(len(p))
	return l.w.Write(p)
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// downloadVia is Download for target t: a delta when a kept bundle allows,
// the full bundle otherwise, the result kept as a base for later deltas.
func (f *tufFetcher) downloadVia(ctx context.Context, t *fetch.Target, dst string) error {
	if f.cache == nil {
		_, err := f.full(ctx, t, dst)
		return err
	}
	start := time.Now()
	base, wire, err := f.downloadDelta(ctx, t, dst)
	if err == nil {
		f.log.Info("bundle rebuilt from a delta", "target", t.Path, "from", base, "delta_bytes", wire, "full_bytes", t.Length, "took", time.Since(start).Round(time.Millisecond))
	} else {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		f.log.Info("delta not used: downloading the full bundle", "target", t.Path, "from", base, "reason", err.Error())
		if _, err := f.full(ctx, t, dst); err != nil {
			return err
		}
	}
	if custom, err := protocol.ParseTargetCustom(t.Custom); err == nil {
		if err := f.cache.keep(custom.Product, custom.Version, dst); err != nil {
			f.log.Warn("could not keep the bundle for later delta updates", "target", t.Path, "err", err)
		}
	}
	return nil
}

func (f *tufFetcher) full(ctx context.Context, t *fetch.Target, dst string) (fetch.Result, error) {
	res, err := f.c.Download(ctx, t, dst)
	if err == nil {
		f.log.Info("bundle downloaded", "target", t.Path, "bytes", t.Length, "resumes", res.Resumes)
	}
	return res, err
}
