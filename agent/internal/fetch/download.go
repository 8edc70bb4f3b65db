package fetch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/dropless/dropless/pkg/atomicfile"
)

// Result says what Download did.
type Result struct {
	Reused  bool  // dst already held the verified target: no request was made
	Bytes   int64 // bytes received in this call
	Resumes int   // Range requests made to resume an interrupted transfer
}

// knownHashes are the algorithms Download verifies, strongest last.
var knownHashes = map[string]func() hash.Hash{"sha256": sha256.New, "sha512": sha512.New}

// Download streams target t to dst. With consistent snapshots it GETs
// <TargetsURL><dir>/<sha256>.<base>, else <TargetsURL><path>, into
// dst+".part" in the same directory, hashing as it writes. It stops reading
// past t.Length (a server sending more is refused), resumes an interrupted
// transfer with a Range request from the .part's size (a few tries in a row
// without progress, with backoff; a 200 answer restarts from zero), and
// verifies the length and every sha256/sha512 hash t has. Only then does it
// fsync, rename into dst and fsync the directory. A failed verification
// removes the .part; a network failure or cancellation keeps it, and the
// next Download resumes from it (and starts over if the result does not
// verify). If dst already holds the verified target, Download makes no
// request and reports Reused; a dst that does not verify is removed first.
func (c *Client) Download(ctx context.Context, t *Target, dst string) (Result, error) {
	if t == nil {
		return Result{}, &Error{Kind: ErrConfig, Msg: "Download needs a target"}
	}
	if _, targetsURL := c.urls(); targetsURL == "" {
		return Result{}, &Error{Kind: ErrConfig, Target: t.Path, Msg: "no targets URL to download from"}
	}
	want, err := wantHashes(t)
	if err != nil {
		return Result{}, err
	}
	d := &download{
		c:      c,
		t:      t,
		want:   want,
		url:    c.targetURL(t, want),
		dst:    dst,
		part:   dst + ".part",
		hashes: map[string]hash.Hash{},
	}
	ok, err := d.dstVerified(ctx)
	if err != nil || ok {
		if ok {
			c.log.Info("target already downloaded and verified", "target", t.Path, "dst", dst)
		}
		return Result{Reused: ok}, err
	}
	if err := d.run(ctx); err != nil {
		return d.res, err
	}
	c.log.Info("downloaded and verified target", "target", t.Path, "dst", dst, "bytes", d.res.Bytes, "resumes", d.res.Resumes)
	return d.res, nil
}

// wantHashes decodes t's hashes, keeping those Download can check.
func wantHashes(t *Target) (map[string][]byte, error) {
	bad := func(msg string) error { return &Error{Kind: ErrBadMetadata, Target: t.Path, Msg: msg} }
	if t.Length < 0 {
		return nil, bad(fmt.Sprintf("negative length %d", t.Length))
	}
	want := map[string][]byte{}
	for alg, h := range t.Hashes {
		if _, ok := knownHashes[alg]; !ok {
			continue
		}
		b, err := hex.DecodeString(h)
		if err != nil || len(b) != knownHashes[alg]().Size() {
			return nil, bad(fmt.Sprintf("%s %q is not a hex digest", alg, h))
		}
		want[alg] = b
	}
	if len(want) == 0 {
		return nil, bad("no sha256 or sha512 hash to verify it with")
	}
	return want, nil
}

// targetURL is where t is served. With consistent snapshots the file name
// is prefixed with a hash (sha256 when there is one: go-tuf picks any).
func (c *Client) targetURL(t *Target, want map[string][]byte) string {
	dir, base := path.Split(t.Path)
	if c.consistentSnapshot() {
		alg := "sha256"
		if _, ok := want[alg]; !ok {
			alg = "sha512"
		}
		base = hex.EncodeToString(want[alg]) + "." + base
	}
	segs := strings.Split(dir+base, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	_, targetsURL := c.urls()
	return targetsURL + strings.Join(segs, "/")
}

// consistentSnapshot reads the trusted root's consistent_snapshot: from the
// last Refresh, else from root.json on disk. The update server always sets
// it, so it is the default.
func (c *Client) consistentSnapshot() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.refreshed {
		return c.consistent
	}
	if data, err := os.ReadFile(c.rootPath()); err == nil {
		if root, err := metadata.Root().FromBytes(data); err == nil {
			return root.Signed.ConsistentSnapshot
		}
	}
	return true
}

// download is one Download call in progress.
type download struct {
	c      *Client
	t      *Target
	want   map[string][]byte
	url    string
	dst    string
	part   string
	f      *os.File
	hashes map[string]hash.Hash
	// written is how much of the target the .part holds.
	written int64
	res     Result
	buf     []byte
}

func (d *download) fail(k Kind, msg string, cause error) *Error {
	return &Error{Kind: k, Target: d.t.Path, Msg: oneLine(msg), Err: cause}
}

func (d *download) canceled(ctx context.Context) *Error {
	return d.fail(ErrCanceled, "download canceled: "+ctx.Err().Error(), ctx.Err())
}

// dstVerified reports whether dst already holds the target. A dst that
// does not is removed, so nothing unverified stays there.
func (d *download) dstVerified(ctx context.Context) (bool, error) {
	fi, err := os.Stat(d.dst)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, d.fail(ErrLocal, err.Error(), err)
	}
	if !fi.Mode().IsRegular() {
		return false, d.fail(ErrLocal, d.dst+" exists and is not a regular file", nil)
	}
	if fi.Size() == d.t.Length {
		f, err := os.Open(d.dst)
		if err != nil {
			return false, d.fail(ErrLocal, err.Error(), err)
		}
		d.resetHashes()
		_, err = d.hashFrom(ctx, f)
		f.Close()
		if err != nil {
			if ctx.Err() != nil {
				return false, d.canceled(ctx)
			}
			return false, d.fail(ErrLocal, err.Error(), err)
		}
		if d.mismatch() == "" {
			return true, nil
		}
	}
	d.c.log.Warn("removing a file that is not the verified target", "target", d.t.Path, "dst", d.dst)
	if err := os.Remove(d.dst); err != nil {
		return false, d.fail(ErrLocal, err.Error(), err)
	}
	return false, nil
}

func (d *download) resetHashes() {
	for alg := range d.want {
		d.hashes[alg] = knownHashes[alg]()
	}
}

// hashFrom feeds r to the hashes, checking ctx between reads.
func (d *download) hashFrom(ctx context.Context, r io.Reader) (int64, error) {
	if d.buf == nil {
		d.buf = make([]byte, 256<<10)
	}
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		m, err := r.Read(d.buf)
		for _, h := range d.hashes {
			h.Write(d.buf[:m])
		}
		n += int64(m)
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// mismatch names the first hash that does not match, or "".
func (d *download) mismatch() string {
	algs := make([]string, 0, len(d.want))
	for alg := range d.want {
		algs = append(algs, alg)
	}
	slices.Sort(algs)
	for _, alg := range algs {
		got := d.hashes[alg].Sum(nil)
		if !bytes.Equal(got, d.want[alg]) {
			return fmt.Sprintf("%s mismatch (got %s, want %s)", alg, hex.EncodeToString(got), hex.EncodeToString(d.want[alg]))
		}
	}
	return ""
}

// open opens the .part, keeping what an earlier call left in it (its bytes
// are hashed again) unless it is longer than the target.
func (d *download) open(ctx context.Context) error {
	f, err := os.OpenFile(d.part, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return d.fail(ErrLocal, err.Error(), err)
	}
	d.f = f
	d.resetHashes()
	fi, err := f.Stat()
	if err != nil {
		return d.fail(ErrLocal, err.Error(), err)
	}
	if fi.Size() > d.t.Length {
		return d.restart()
	}
	if fi.Size() > 0 {
		n, err := d.hashFrom(ctx, io.LimitReader(f, fi.Size()))
		if err != nil {
			if ctx.Err() != nil {
				return d.canceled(ctx)
			}
			return d.fail(ErrLocal, err.Error(), err)
		}
		d.written = n
		d.c.log.Info("resuming target download from an earlier .part", "target", d.t.Path, "bytes", n)
	}
	return nil
}

// restart empties the .part and the hashes.
func (d *download) restart() error {
	if err := d.f.Truncate(0); err != nil {
		return d.fail(ErrLocal, err.Error(), err)
	}
	if _, err := d.f.Seek(0, io.SeekStart); err != nil {
		return d.fail(ErrLocal, err.Error(), err)
	}
	d.written = 0
	d.resetHashes()
	return nil
}

// run fetches into the .part until it holds the target, verifies it and
// renames it into place.
func (d *download) run(ctx context.Context) (err error) {
	removePart := false
	defer func() {
		if d.f != nil {
			d.f.Close()
		}
		if err != nil && removePart {
			os.Remove(d.part)
		}
	}()
	if err := d.open(ctx); err != nil {
		removePart = !errors.Is(err, ErrCanceled)
		return err
	}
	fromEarlier := d.written > 0
	for {
		if err := d.fill(ctx); err != nil {
			// Keep a .part worth resuming; drop one that proved bad.
			removePart = !errors.Is(err, ErrCanceled) && !errors.Is(err, ErrNetwork) && !errors.Is(err, ErrHTTP) || d.written == 0
			return err
		}
		msg := d.mismatch()
		if msg == "" {
			break
		}
		if fromEarlier {
			// The bytes an earlier call left may be what is wrong.
			d.c.log.Warn("target resumed from an earlier .part does not verify: downloading it again", "target", d.t.Path)
			fromEarlier = false
			if err := d.restart(); err != nil {
				removePart = true
				return err
			}
			continue
		}
		removePart = true
		return d.fail(ErrHashMismatch, msg, &metadata.ErrLengthOrHashMismatch{Msg: msg})
	}
	if err := d.f.Sync(); err != nil {
		removePart = true
		return d.fail(ErrLocal, err.Error(), err)
	}
	if err := d.f.Close(); err != nil {
		d.f = nil
		removePart = true
		return d.fail(ErrLocal, err.Error(), err)
	}
	d.f = nil
	if err := atomicfile.Rename(d.part, d.dst); err != nil {
		removePart = true
		return d.fail(ErrLocal, err.Error(), err)
	}
	return nil
}

// fill makes requests until the .part holds t.Length bytes, retrying a few
// times in a row without progress. Progress is getting further than ever
// before: a server that restarts from zero and breaks at the same place
// makes none.
func (d *download) fill(ctx context.Context) error {
	failures := 0
	best := d.written
	for d.written < d.t.Length {
		_, retry, err := d.once(ctx)
		if d.written > best {
			best = d.written
			failures = 0
		}
		if err == nil {
			continue
		}
		if !retry {
			return err
		}
		failures++
		if failures > d.c.retries {
			return err
		}
		delay := backoffDelay(d.c.backoff, failures)
		d.c.log.Warn("target download interrupted; trying again", "target", d.t.Path, "at", d.written, "of", d.t.Length, "in", delay, "err", err)
		if sleep(ctx, delay) != nil {
			return d.canceled(ctx)
		}
		// With several servers, the next try (resuming) may go to
		// another one.
		d.c.failed(d.url)
		d.url = d.c.targetURL(d.t, d.want)
	}
	return nil
}

// once makes one request for the rest of the target and copies the answer
// into the .part. It returns how many bytes it added and, on error, whether
// another try makes sense.
func (d *download) once(ctx context.Context) (n int64, retry bool, err error) {
	reqCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	watchdog := time.AfterFunc(d.c.stallTimeout, func() { cancel(errStalled) })
	defer watchdog.Stop()

	req, err := http.NewRequestWithContext(reqCtx, http.MethodGet, d.url, nil)
	if err != nil {
		return 0, false, d.fail(ErrConfig, err.Error(), err)
	}
	// Byte offsets must be those of the file itself, not of a transparently
	// decoded gzip stream.
	req.Header.Set("Accept-Encoding", "identity")
	ranged := d.written > 0
	if ranged {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(d.written, 10)+"-")
		d.res.Resumes++
	}
	resp, err := d.c.http.Do(req)
	if err != nil {
		return 0, true, d.transferError(ctx, reqCtx, err)
	}
	defer resp.Body.Close()

	switch code := resp.StatusCode; {
	case code == http.StatusOK:
		if ranged {
			d.c.log.Info("server ignored the Range request: downloading from the start", "target", d.t.Path)
			if err := d.restart(); err != nil {
				return 0, false, err
			}
		}
	case code == http.StatusPartialContent && ranged:
		if start, ok := contentRangeStart(resp.Header.Get("Content-Range")); !ok || start != d.written {
			d.c.log.Warn("server answered a Range request with another range: downloading from the start", "target", d.t.Path, "content_range", resp.Header.Get("Content-Range"))
			if err := d.restart(); err != nil {
				return 0, false, err
			}
			return 0, true, d.fail(ErrHTTP, fmt.Sprintf("%s answered Range bytes=%d- with Content-Range %q", d.url, d.written, resp.Header.Get("Content-Range")), nil)
		}
	case code == http.StatusRequestedRangeNotSatisfiable && ranged:
		if err := d.restart(); err != nil {
			return 0, false, err
		}
		return 0, true, d.fail(ErrHTTP, fmt.Sprintf("%s refused Range bytes=%d- (HTTP 416)", d.url, d.written), nil)
	case code == http.StatusNotFound:
		return 0, false, d.fail(ErrNotFound, fmt.Sprintf("not found at %s (HTTP 404)", d.url), &metadata.ErrDownloadHTTP{StatusCode: code, URL: d.url})
	default:
		return 0, statusRetryable(code), d.fail(ErrHTTP, fmt.Sprintf("%s answered HTTP %d", d.url, code), &metadata.ErrDownloadHTTP{StatusCode: code, URL: d.url})
	}

	remaining := d.t.Length - d.written
	if resp.ContentLength > remaining {
		return 0, false, d.exceeded(fmt.Sprintf("server announced %d bytes from offset %d, more than the trusted length %d", resp.ContentLength, d.written, d.t.Length))
	}
	// Read at most one byte more than the trusted length: enough to know
	// the server sends too much, never enough to fill the disk.
	n, rerr, werr := d.copy(resp.Body, remaining+1, watchdog)
	d.res.Bytes += n
	if werr != nil {
		return n, false, d.fail(ErrLocal, werr.Error(), werr)
	}
	if d.written > d.t.Length {
		return n, false, d.exceeded(fmt.Sprintf("server sent more than the trusted length %d", d.t.Length))
	}
	if rerr != nil {
		return n, true, d.transferError(ctx, reqCtx, rerr)
	}
	if d.written < d.t.Length {
		return n, true, d.fail(ErrLengthMismatch, fmt.Sprintf("server sent only %d of the trusted length %d", d.written, d.t.Length), errShortBody)
	}
	return n, false, nil
}

func (d *download) exceeded(msg string) *Error {
	return d.fail(ErrLengthExceeded, msg, &metadata.ErrDownloadLengthMismatch{Msg: msg})
}

// transferError explains a failed request or read: the caller's
// cancellation, a stall, or the network.
func (d *download) transferError(ctx, reqCtx context.Context, err error) *Error {
	if ctx.Err() != nil {
		return d.canceled(ctx)
	}
	if errors.Is(context.Cause(reqCtx), errStalled) {
		return d.fail(ErrNetwork, fmt.Sprintf("download from %s stalled: no data for %s", d.url, d.c.stallTimeout), errStalled)
	}
	return d.fail(ErrNetwork, fmt.Sprintf("download from %s failed: %v", d.url, err), err)
}

// copy moves up to limit bytes from body into the .part and the hashes,
// never writing past the trusted length. It counts the bytes read; the
// watchdog is pushed back at each read that brings data.
func (d *download) copy(body io.Reader, limit int64, watchdog *time.Timer) (n int64, readErr, writeErr error) {
	if d.buf == nil {
		d.buf = make([]byte, 256<<10)
	}
	r := io.LimitReader(body, limit)
	for {
		m, err := r.Read(d.buf)
		if m > 0 {
			watchdog.Reset(d.c.stallTimeout)
			n += int64(m)
			keep := min(int64(m), d.t.Length-d.written)
			if keep > 0 {
				if _, werr := d.f.Write(d.buf[:keep]); werr != nil {
					return n, nil, werr
				}
				for _, h := range d.hashes {
					h.Write(d.buf[:keep])
				}
			}
			d.written += int64(m)
		}
		if err == io.EOF {
			return n, nil, nil
		}
		if err != nil {
			return n, err, nil
		}
	}
}

var reContentRange = regexp.MustCompile(`^bytes ([0-9]+)-[0-9]+/(?:[0-9]+|\*)$`)

// contentRangeStart parses the first byte of a Content-Range header.
func contentRangeStart(h string) (int64, bool) {
	m := reContentRange.FindStringSubmatch(strings.TrimSpace(h))
	if m == nil {
		return 0, false
	}
	v, err := strconv.ParseInt(m[1], 10, 64)
	return v, err == nil
}
