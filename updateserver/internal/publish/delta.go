package publish

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/dropless/dropless/pkg/atomicfile"
	"github.com/dropless/dropless/pkg/delta"
	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/pkg/versions"
	"github.com/dropless/dropless/updateserver/internal/store"
	"github.com/dropless/dropless/updateserver/internal/tufrepo"
)

// DefaultDeltaBases is how many earlier releases of the same line get a
// delta to a new release, when Publisher.DeltaBases is zero.
const DefaultDeltaBases = 3

// madeDelta is a delta file staged in the uploads directory, not yet a
// target.
type madeDelta struct {
	protocol.Delta
	tf   *tufrepo.TargetFile
	file string // staged file
}

// deltaBases returns the releases a new release of product at version gets
// deltas from: the newest n earlier, not yanked releases of the same line
// (same product, same major.minor), newest first.
func (p *Publisher) deltaBases(ctx context.Context, rel protocol.Release) ([]protocol.Release, error) {
	n := p.DeltaBases
	if n == 0 {
		n = DefaultDeltaBases
	}
	if n < 0 {
		return nil, nil
	}
	v, err := versions.Parse(rel.Version)
	if err != nil {
		return nil, err
	}
	all, err := p.Store.ListReleases(ctx, store.ReleaseFilter{Product: rel.Product})
	if err != nil {
		return nil, err
	}
	seg := v.Segments()
	var out []protocol.Release
	for _, r := range all { // newest version first
		bv, err := versions.Parse(r.Version)
		if err != nil || r.Yanked || !bv.LessThan(v) {
			continue
		}
		bs := bv.Segments()
		if bs[0] != seg[0] || bs[1] != seg[1] {
			continue
		}
		out = append(out, r)
		if len(out) == n {
			break
		}
	}
	return out, nil
}

// targetFile is where a published target's content lies.
func (p *Publisher) targetFile(targetPath, sha string) string {
	return filepath.Join(p.TargetsDir, filepath.FromSlash(path.Dir(targetPath)), sha+"."+path.Base(targetPath))
}

// makeDeltas stages a delta to rel (whose bundle is the staged file
// bundlePath) from each of its delta bases. A delta that cannot be made is
// logged and skipped: the full bundle is always there.
func (p *Publisher) makeDeltas(ctx context.Context, rel protocol.Release, bundlePath string) []madeDelta {
	bases, err := p.deltaBases(ctx, rel)
	if err != nil || len(bases) == 0 {
		if err != nil {
			p.Log.Warn("no deltas for this release", "product", rel.Product, "version", rel.Version, "err", err)
		}
		return nil
	}
	start := time.Now()
	// Decompressing the new bundle also checks that an agent can rebuild
	// it byte for byte; one from another packer fails at its header or
	// first block, before the whole bundle is read.
	resTar, resSize, err := p.gunzipTemp(bundlePath, true)
	if errors.Is(err, delta.ErrNotReproducible) {
		p.Log.Info("no deltas for this release: its bundle was not packed by dropless (publish the directory to get deltas)", "product", rel.Product, "version", rel.Version)
		return nil
	}
	if err != nil {
		p.Log.Warn("no deltas for this release", "product", rel.Product, "version", rel.Version, "err", err)
		return nil
	}
	defer closeRemove(resTar)
	var out []madeDelta
	for _, b := range bases {
		if ctx.Err() != nil {
			break
		}
		d, err := p.makeDelta(rel, b, resTar, resSize)
		if err != nil {
			p.Log.Warn("delta not made", "product", rel.Product, "version", rel.Version, "from", b.Version, "err", err)
			continue
		}
		out = append(out, d)
		p.Log.Info("delta made", "product", rel.Product, "version", rel.Version, "from", b.Version,
			"bytes", d.Length, "full_bytes", rel.Length, "took", time.Since(start).Round(time.Millisecond))
	}
	return out
}

func (p *Publisher) makeDelta(rel, base protocol.Release, resTar *os.File, resSize int64) (madeDelta, error) {
	baseTar, baseSize, err := p.gunzipTemp(p.targetFile(base.Target, base.SHA256), false)
	if err != nil {
		return madeDelta{}, err
	}
	defer closeRemove(baseTar)
	f, err := os.CreateTemp(p.UploadsDir, "delta-*.part")
	if err != nil {
		return madeDelta{}, err
	}
	ok := false
	defer func() {
		if !ok {
			closeRemove(f)
		}
	}()
	h := sha256.New()
	cw := &countingWriter{w: io.MultiWriter(f, h)}
	if err := delta.Create(cw, baseTar, baseSize, resTar, resSize); err != nil {
		return madeDelta{}, err
	}
	if err := f.Sync(); err != nil {
		return madeDelta{}, err
	}
	if err := f.Close(); err != nil {
		return madeDelta{}, err
	}
	d := madeDelta{
		Delta: protocol.Delta{From: base.Version, Target: protocol.DeltaTargetPath(rel.Product, rel.Version, base.Version),
			SHA256: hex.EncodeToString(h.Sum(nil)), Length: cw.n},
		file: f.Name(),
	}
	if d.Length >= rel.Length {
		os.Remove(d.file)
		return madeDelta{}, fmt.Errorf("the delta (%d bytes) is no smaller than the bundle (%d)", d.Length, rel.Length)
	}
	raw, _ := json.Marshal(protocol.DeltaCustom{Product: rel.Product, Version: rel.Version, From: base.Version, Result: rel.Target})
	rm := json.RawMessage(raw)
	sum, _ := hex.DecodeString(d.SHA256)
	d.tf = metadata.TargetFile()
	d.tf.Length = d.Length
	d.tf.Hashes = metadata.Hashes{"sha256": sum}
	d.tf.Custom = &rm
	ok = true
	return d, nil
}

// gunzipTemp decompresses a bundle into a temporary file in the uploads
// directory (closeRemove removes it). With reproducible, it fails with
// delta.ErrNotReproducible, before making the file when the gzip header
// tells, unless recompressing the tar gives the bundle byte for byte.
func (p *Publisher) gunzipTemp(bundlePath string, reproducible bool) (*os.File, int64, error) {
	in, err := os.Open(bundlePath)
	if err != nil {
		return nil, 0, err
	}
	defer in.Close()
	if reproducible && !delta.PackHeader(in) {
		return nil, 0, delta.ErrNotReproducible
	}
	f, err := os.CreateTemp(p.UploadsDir, "tar-*.part")
	if err != nil {
		return nil, 0, err
	}
	var n int64
	if reproducible {
		var fi os.FileInfo
		if fi, err = in.Stat(); err == nil {
			n, err = delta.GunzipReproducible(f, in, fi.Size())
		}
	} else {
		n, err = delta.Gunzip(f, in)
	}
	if errors.Is(err, delta.ErrNotReproducible) {
		closeRemove(f)
		return nil, 0, err
	}
	if err != nil {
		closeRemove(f)
		return nil, 0, fmt.Errorf("decompress %s: %w", filepath.Base(bundlePath), err)
	}
	return f, n, nil
}

func closeRemove(f *os.File) {
	f.Close()
	os.Remove(f.Name())
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

// placeDeltas moves staged deltas to their content-addressed target files.
// On error it removes what it placed.
func (p *Publisher) placeDeltas(ds []madeDelta) ([]string, error) {
	var placed []string
	for _, d := range ds {
		dst := p.targetFile(d.Target, d.SHA256)
		err := os.MkdirAll(filepath.Dir(dst), 0o755)
		if err == nil {
			err = atomicfile.Rename(d.file, dst)
		}
		if err != nil {
			removeAll(placed)
			return nil, fmt.Errorf("place delta from %s: %w", d.From, err)
		}
		placed = append(placed, dst)
	}
	return placed, nil
}

func removeAll(files []string) {
	for _, f := range files {
		os.Remove(f)
	}
}

// discardDeltas removes staged deltas that were not published.
func discardDeltas(ds []madeDelta) {
	for _, d := range ds {
		os.Remove(d.file)
	}
}

// deltaTargets is the targets map of a release and its deltas.
func deltaTargets(targetPath string, tf *tufrepo.TargetFile, ds []madeDelta) map[string]*tufrepo.TargetFile {
	m := map[string]*tufrepo.TargetFile{targetPath: tf}
	for _, d := range ds {
		m[d.Target] = d.tf
	}
	return m
}

// ReleaseDeltas lists the deltas that rebuild product's version, read
// from the current signed targets metadata.
func (p *Publisher) ReleaseDeltas(ctx context.Context, product, version string) ([]protocol.Delta, error) {
	cur, err := p.Store.LatestMetadata(ctx, tufrepo.RoleTargets)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var md metadata.Metadata[metadata.TargetsType]
	t, err := md.FromBytes(cur.Data)
	if err != nil {
		return nil, err
	}
	var out []protocol.Delta
	for name, tf := range t.Signed.Targets {
		if tf.Custom == nil {
			continue
		}
		c, err := protocol.ParseDeltaCustom(*tf.Custom)
		if err != nil || c.Product != product || c.Version != version {
			continue
		}
		out = append(out, protocol.Delta{From: c.From, Target: name, SHA256: hex.EncodeToString(tf.Hashes["sha256"]), Length: tf.Length})
	}
	slices.SortFunc(out, func(a, b protocol.Delta) int { return versions.Compare(b.From, a.From) })
	return out, nil
}
