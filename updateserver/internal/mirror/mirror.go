// Package mirror copies a TUF repository served over HTTP into a directory
// that any plain file server can serve: metadata/ (the whole root chain,
// timestamp.json and the current snapshot and targets versions) and
// targets/ (every target, hash-prefixed as consistent snapshots name them).
//
// It checks what it copies the way a mirror must: every target's length and
// sha256 against the targets metadata. (The signatures are for the clients
// to check; a mirror is not trusted either way.) Targets already in the
// directory are not fetched again, so exporting on a schedule is cheap.
package mirror

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/dropless/dropless/pkg/atomicfile"
)

// Getter fetches a path below the repository's base URL.
type Getter func(ctx context.Context, path string) (*http.Response, error)

// Result says what an export did.
type Result struct {
	RootVersions    int
	TargetsFetched  int
	TargetsReused   int
	SnapshotVersion int64
	TargetsVersion  int64
}

// maxMetadata bounds one metadata file (go-tuf clients accept 5 MB of
// targets metadata).
const maxMetadata = 8 << 20

// Export copies the repository at get into dir.
func Export(ctx context.Context, get Getter, dir string) (Result, error) {
	return ExportTargets(ctx, get, dir, nil)
}

// ExportTargets is Export with only the targets whose paths are in only
// (all of them when only is nil); a path in only that the targets
// metadata does not list is an error. The air-gap file uses it.
func ExportTargets(ctx context.Context, get Getter, dir string, only []string) (Result, error) {
	var res Result
	mdDir, tDir := filepath.Join(dir, "metadata"), filepath.Join(dir, "targets")
	for _, d := range []string{mdDir, tDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return res, err
		}
	}
	// The root chain, 1.root.json up to the newest.
	for v := 1; ; v++ {
		name := fmt.Sprintf("%d.root.json", v)
		b, err := fetch(ctx, get, "metadata/"+name, maxMetadata)
		if errors.Is(err, errNotFound) && v > 1 {
			break
		}
		if err != nil {
			return res, err
		}
		if err := atomicfile.WriteFile(filepath.Join(mdDir, name), b, 0o644); err != nil {
			return res, err
		}
		res.RootVersions = v
	}
	tsBytes, err := fetch(ctx, get, "metadata/timestamp.json", maxMetadata)
	if err != nil {
		return res, err
	}
	ts, err := (&metadata.Metadata[metadata.TimestampType]{}).FromBytes(tsBytes)
	if err != nil {
		return res, fmt.Errorf("timestamp.json: %w", err)
	}
	snapMeta, ok := ts.Signed.Meta["snapshot.json"]
	if !ok {
		return res, errors.New("timestamp.json names no snapshot")
	}
	snapName := fmt.Sprintf("%d.snapshot.json", snapMeta.Version)
	snapBytes, err := fetch(ctx, get, "metadata/"+snapName, maxMetadata)
	if err != nil {
		return res, err
	}
	snap, err := (&metadata.Metadata[metadata.SnapshotType]{}).FromBytes(snapBytes)
	if err != nil {
		return res, fmt.Errorf("%s: %w", snapName, err)
	}
	targetsMeta, ok := snap.Signed.Meta["targets.json"]
	if !ok {
		return res, fmt.Errorf("%s names no targets metadata", snapName)
	}
	targetsName := fmt.Sprintf("%d.targets.json", targetsMeta.Version)
	targetsBytes, err := fetch(ctx, get, "metadata/"+targetsName, maxMetadata)
	if err != nil {
		return res, err
	}
	targets, err := (&metadata.Metadata[metadata.TargetsType]{}).FromBytes(targetsBytes)
	if err != nil {
		return res, fmt.Errorf("%s: %w", targetsName, err)
	}
	res.SnapshotVersion, res.TargetsVersion = snapMeta.Version, targetsMeta.Version

	for _, p := range only {
		if _, ok := targets.Signed.Targets[p]; !ok {
			return res, fmt.Errorf("target %s is not in %s", p, targetsName)
		}
	}
	for tpath, tf := range targets.Signed.Targets {
		if only != nil && !slices.Contains(only, tpath) {
			continue
		}
		sum, ok := tf.Hashes["sha256"]
		if !ok {
			return res, fmt.Errorf("target %s has no sha256", tpath)
		}
		if !filepath.IsLocal(filepath.FromSlash(tpath)) {
			return res, fmt.Errorf("target path %q is not a relative path: refusing to write it", tpath)
		}
		hexSum := hex.EncodeToString(sum)
		rel := path.Join(path.Dir(tpath), hexSum+"."+path.Base(tpath))
		dst := filepath.Join(tDir, filepath.FromSlash(rel))
		if fi, err := os.Stat(dst); err == nil && fi.Size() == tf.Length {
			res.TargetsReused++
			continue
		}
		if err := fetchTarget(ctx, get, "targets/"+rel, dst, tf.Length, hexSum); err != nil {
			return res, fmt.Errorf("target %s: %w", tpath, err)
		}
		res.TargetsFetched++
	}
	// Metadata last, timestamp.json very last: a client reading the mirror
	// mid-export sees the old repository or the new one.
	for name, b := range map[string][]byte{targetsName: targetsBytes, snapName: snapBytes} {
		if err := atomicfile.WriteFile(filepath.Join(mdDir, name), b, 0o644); err != nil {
			return res, err
		}
	}
	return res, atomicfile.WriteFile(filepath.Join(mdDir, "timestamp.json"), tsBytes, 0o644)
}

var errNotFound = errors.New("not found")

func fetch(ctx context.Context, get Getter, p string, limit int64) ([]byte, error) {
	resp, err := get(ctx, p)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil, fmt.Errorf("%s: %w", p, errNotFound)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: the server answered %s", p, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", p, limit)
	}
	return b, nil
}

func fetchTarget(ctx context.Context, get Getter, p, dst string, length int64, hexSum string) error {
	resp, err := get(ctx, p)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: the server answered %s", p, resp.Status)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return atomicfile.Write(dst, 0o644, func(w io.Writer) error {
		h := sha256.New()
		n, err := io.Copy(io.MultiWriter(w, h), io.LimitReader(resp.Body, length+1))
		if err != nil {
			return err
		}
		if n != length {
			return fmt.Errorf("got %d bytes, the metadata says %d", n, length)
		}
		if got := hex.EncodeToString(h.Sum(nil)); !strings.EqualFold(got, hexSum) {
			return fmt.Errorf("sha256 is %s, the metadata says %s", got, hexSum)
		}
		return nil
	})
}
