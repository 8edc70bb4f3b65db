// Package publish is the release team's side of the server: it receives
// bundle uploads (streamed to disk, hashed and validated in one pass),
// publishes releases atomically with their TUF target and metadata,
// promotes and yanks them, and keeps the repository's timestamp and snapshot
// signatures fresh.
package publish

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dropless/dropless/pkg/atomicfile"
	"github.com/dropless/dropless/pkg/bundle"
	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/fault"
	"github.com/dropless/dropless/updateserver/internal/notify"
	"github.com/dropless/dropless/updateserver/internal/store"
	"github.com/dropless/dropless/updateserver/internal/tufrepo"
)

// Publisher owns the release catalogue and the TUF repository.
type Publisher struct {
	Store      *store.Store
	Repo       tufrepo.Repo
	TargetsDir string // served at /tuf/targets/
	UploadsDir string // staged uploads
	Limits     bundle.Limits
	// DeltaBases is how many earlier releases of the same line get a
	// delta to each new release (0: DefaultDeltaBases; negative: none).
	DeltaBases int
	MaxUpload  int64 // largest bundle accepted, compressed bytes
	Now        func() time.Time
	Log        *slog.Logger
	// mu serialises signing: two publishes, or a publish and a refresh,
	// must not both sign version N+1.
	mu sync.Mutex
	// subs are told about releases published, promoted and yanked.
	subs subscribers
}

func (p *Publisher) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

// CurrentSet returns the newest signed metadata of every top-level role.
func (p *Publisher) CurrentSet(ctx context.Context) (tufrepo.Set, error) {
	var set tufrepo.Set
	for _, role := range tufrepo.TopLevelRoles {
		m, err := p.Store.LatestMetadata(ctx, role)
		if err != nil {
			return set, fmt.Errorf("load %s metadata: %w", role, err)
		}
		switch role {
		case tufrepo.RoleRoot:
			set.Root = m.Data
		case tufrepo.RoleTargets:
			set.Targets = m.Data
		case tufrepo.RoleSnapshot:
			set.Snapshot = m.Data
		case tufrepo.RoleTimestamp:
			set.Timestamp = m.Data
		}
	}
	return set, nil
}

// Initialized reports whether the repository has its first metadata.
func (p *Publisher) Initialized(ctx context.Context) (bool, error) {
	_, err := p.Store.LatestMetadata(ctx, tufrepo.RoleRoot)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// Init creates keys that are missing and signs version 1 of every role.
func (p *Publisher) Init(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.Repo.Keys.Generate(); err != nil {
		return err
	}
	set, err := p.Repo.Initial(p.now())
	if err != nil {
		return err
	}
	return p.Store.SaveMetadata(ctx, p.now(), metadataRows(set, tufrepo.TopLevelRoles...),
		&store.Audit{Actor: "updateserver", Action: "repo.init", Object: "tuf repository"})
}

// metadataRows turns the named roles of set into store rows.
func metadataRows(set tufrepo.Set, roles ...string) []store.Metadata {
	var out []store.Metadata
	for _, role := range roles {
		var data []byte
		switch role {
		case tufrepo.RoleRoot:
			data = set.Root
		case tufrepo.RoleTargets:
			data = set.Targets
		case tufrepo.RoleSnapshot:
			data = set.Snapshot
		case tufrepo.RoleTimestamp:
			data = set.Timestamp
		}
		out = append(out, store.Metadata{Role: role, Version: metadataVersion(data), Data: data})
	}
	return out
}

func metadataVersion(data []byte) int64 {
	var v struct {
		Signed struct {
			Version int64 `json:"version"`
		} `json:"signed"`
	}
	json.Unmarshal(data, &v)
	return v.Signed.Version
}

var uploadIDRe = regexp.MustCompile(`^[0-9a-f]{32}$`)

func (p *Publisher) uploadPath(id string) string {
	return filepath.Join(p.UploadsDir, id+".tar.gz")
}

// Upload streams a bundle to the staging area, hashing it and checking it
// is a valid bundle as the bytes arrive, in constant memory. Nothing is
// staged unless the whole bundle is valid.
func (p *Publisher) Upload(ctx context.Context, body io.Reader, actor string) (protocol.Upload, error) {
	pipe := newAsyncPipe(8)
	return p.stage(ctx, actor, pipe, func(f *os.File, sb *syncBehind) (int64, error) {
		limited := &io.LimitedReader{R: body, N: p.MaxUpload + 1}
		return receive(atomicfile.NewWriteBehind(f, 0), sb, pipe, ctxReader{ctx, limited})
	})
}

// feed carries the received bytes to the scanner: the receiver calls
// CloseWrite when it is done, the scanner CloseRead when it is, which
// makes the receiver stop with the scanner's error (or io.ErrClosedPipe).
type feed interface {
	io.Reader
	CloseWrite()
	CloseRead(err error)
}

// stage receives a bundle into a staged file with recv (which writes the
// file and passes what it received on through fd), while another goroutine
// checks it is a bundle and hashes it (a feed that hashes what it hands
// out, as the spliced path's does, does it on a goroutine of its own:
// sha256 costs about twice the scan); then it makes the file durable and
// records the upload. The file is made durable in steps as it is written
// (syncBehind), the last one as soon as the last byte is written, while
// the checks finish.
func (p *Publisher) stage(ctx context.Context, actor string, fd feed, recv func(f *os.File, sb *syncBehind) (int64, error)) (protocol.Upload, error) {
	id := randomID()
	final := p.uploadPath(id)
	f, err := os.CreateTemp(p.UploadsDir, id+".*.part")
	if err != nil {
		return protocol.Upload{}, fmt.Errorf("stage upload: %w", err)
	}
	tmp := f.Name()
	ok := false
	sb := newSyncBehind(f)
	synced := make(chan error, 1)
	syncing := false
	defer func() {
		if syncing {
			<-synced
		}
		sb.wg.Wait()
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()

	type scanResult struct {
		info *bundle.Info
		err  error
		at   time.Time // when the scan ended
	}
	scanned := make(chan scanResult, 1)
	// On success Scan has read to EOF and refused anything after the gzip
	// stream itself, so the hash saw every byte, and every byte it saw
	// was checked.
	h := sha256.New()
	src := io.TeeReader(fd, h)
	hf, selfHashed := fd.(interface{ Sum() []byte })
	if selfHashed {
		src = fd
	}
	go func() {
		info, err := bundle.Scan(src, p.Limits)
		fd.CloseRead(err)
		scanned <- scanResult{info, err, time.Now()}
	}()

	start := time.Now()
	n, copyErr := recv(f, sb)
	received := time.Now()
	fd.CloseWrite()
	if copyErr == nil && n <= p.MaxUpload {
		syncing = true
		go func() { synced <- sb.Sync() }()
	}
	res := <-scanned
	switch {
	case n > p.MaxUpload:
		return protocol.Upload{}, fault.New(fault.TooLarge, "the bundle is larger than this server accepts (%d bytes): raise serve --max-bundle-size or make the bundle smaller", p.MaxUpload)
	case res.err != nil && (copyErr == nil || errors.Is(copyErr, res.err) || errors.Is(copyErr, io.ErrClosedPipe)):
		return protocol.Upload{}, bundleFault(res.err)
	case copyErr != nil:
		return protocol.Upload{}, fmt.Errorf("receive bundle: %w", copyErr)
	case res.err != nil:
		return protocol.Upload{}, bundleFault(res.err)
	}
	sum, checked := h.Sum(nil), res.at
	if selfHashed {
		sum, checked = hf.Sum(), time.Now()
	}
	syncing = false
	if err := <-synced; err != nil {
		return protocol.Upload{}, fmt.Errorf("stage upload: %w", err)
	}
	durable := time.Now()
	if err := f.Close(); err != nil {
		return protocol.Upload{}, fmt.Errorf("stage upload: %w", err)
	}
	if err := atomicfile.Rename(tmp, final); err != nil {
		return protocol.Upload{}, fmt.Errorf("stage upload: %w", err)
	}
	up := protocol.Upload{ID: id, SHA256: hex.EncodeToString(sum), Length: n}
	if m := res.info.Manifest; m != nil {
		up.Product, up.Version, up.UpgradeFrom, up.Notes = m.Product, m.Version, m.UpgradeFrom, m.Notes
	}
	manifest, _ := json.Marshal(up)
	if err := p.Store.InsertUpload(ctx, store.Upload{ID: id, SHA256: up.SHA256, Length: n, Manifest: string(manifest), CreatedAt: p.now(), CreatedBy: actor}); err != nil {
		os.Remove(final)
		return protocol.Upload{}, fmt.Errorf("record upload: %w", err)
	}
	ok = true
	// Where the time went: receiving (and writing), the checks' tail
	// (scan and hash) after the last byte landed, what the final fsync,
	// started with that tail, took beyond it.
	tail := max(0, checked.Sub(received))
	p.Log.Info("bundle staged", "upload", id, "bytes", n, "sha256", up.SHA256, "by", actor,
		"receive", received.Sub(start).Round(time.Millisecond),
		"scan_tail", tail.Round(time.Millisecond),
		"fsync", max(0, durable.Sub(received.Add(tail))).Round(time.Millisecond))
	return up, nil
}

// receive reads body into whole chunks of the pipe, writes each to the
// staged file, then hands it to the scanner without copying it. Whole
// chunks: an HTTP body gives at most one transfer chunk (32 KiB from Go's
// client) per Read, and passing each on would cost a write(2) and a
// goroutine hand-off per 32 KiB. The staged file is flushed behind the
// write position, so the final fsync finds little left to write. It
// returns how many bytes it received and the first error of the body, the
// file or the scanner (which stops it).
func receive(file io.Writer, sb *syncBehind, pipe *asyncPipe, body io.Reader) (int64, error) {
	var n int64
	for {
		c := pipe.Chunk()
		m, err := io.ReadFull(body, c)
		if m > 0 {
			if _, werr := file.Write(c[:m]); werr != nil {
				return n, werr
			}
			n += int64(m)
			sb.Wrote(n)
			if serr := pipe.Send(c[:m]); serr != nil {
				return n, serr
			}
		}
		switch {
		case err == io.EOF || err == io.ErrUnexpectedEOF:
			return n, nil
		case err != nil:
			return n, err
		}
	}
}

func bundleFault(err error) error {
	if errors.Is(err, bundle.ErrTooLarge) {
		return fault.Wrap(fault.TooLarge, err)
	}
	return &fault.Error{Kind: fault.Invalid, Msg: "the upload is not a valid bundle: " + err.Error(), Err: err}
}

// ctxReader stops a copy when ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(b []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(b)
}

func randomID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Effective merges a publish request over the bundle's manifest: fields
// given with the request win. The offline signer and the server both call
// it, so they agree on the target they sign and check.
func Effective(up protocol.Upload, req protocol.PublishRequest) protocol.Release {
	pick := func(a, b string) string {
		if a != "" {
			return a
		}
		return b
	}
	return protocol.Release{
		Product:     pick(req.Product, up.Product),
		Version:     pick(req.Version, up.Version),
		UpgradeFrom: pick(req.UpgradeFrom, up.UpgradeFrom),
		Notes:       pick(req.Notes, up.Notes),
		Channels:    req.Channels,
		SHA256:      up.SHA256,
		Length:      up.Length,
	}
}

// TargetFor returns the TUF target path and entry of a release.
func TargetFor(r protocol.Release) (string, *tufrepo.TargetFile, error) {
	tf, err := tufrepo.NewTargetFile(protocol.TargetCustom{Product: r.Product, Version: r.Version, UpgradeFrom: r.UpgradeFrom}, r.SHA256, r.Length)
	return protocol.TargetPath(r.Product, r.Version), tf, err
}

// maxNotes bounds release notes.
const maxNotes = 256 << 10

// ValidateRelease checks the user-supplied fields of a release.
func ValidateRelease(r protocol.Release) error {
	if r.Product == "" {
		return fault.New(fault.Invalid, "the release has no product: give --product or set product in bundle.toml")
	}
	if r.Version == "" {
		return fault.New(fault.Invalid, "the release has no version: give --version or set version in bundle.toml")
	}
	if err := bundle.ValidateProduct(r.Product); err != nil {
		return fault.Wrap(fault.Invalid, err)
	}
	if err := bundle.ValidateVersion(r.Version); err != nil {
		return fault.Wrap(fault.Invalid, err)
	}
	if r.UpgradeFrom != "" {
		if err := bundle.ValidateConstraint(r.UpgradeFrom); err != nil {
			return fault.Wrap(fault.Invalid, err)
		}
	}
	if len(r.Notes) > maxNotes {
		return fault.New(fault.Invalid, "release notes are %d bytes, more than the %d allowed", len(r.Notes), maxNotes)
	}
	for _, ch := range r.Channels {
		if err := ValidateChannel(ch); err != nil {
			return err
		}
	}
	return nil
}

// ValidateChannel checks a channel name.
func ValidateChannel(ch string) error {
	if protocol.ValidName("channel", ch) != nil {
		return fault.New(fault.Invalid, "channel %q is not valid: use lower-case letters, digits, '.', '_' and '-' (like stable or hotfix-3.2)", ch)
	}
	return nil
}

// Publish makes a staged upload a release: its TUF target, new targets,
// snapshot and timestamp metadata and the release row appear together, or
// nothing changes.
//
// Replicas sign in parallel: when another one stored the same metadata
// version first (the store refuses a second version N), Publish signs
// again on top of it, a few times, unless the release team signed the
// targets itself (then it is theirs to sign again).
func (p *Publisher) Publish(ctx context.Context, req protocol.PublishRequest, actor string) (protocol.Release, error) {
	for attempt := 1; ; attempt++ {
		rel, err := p.publishOnce(ctx, req, actor)
		if !errors.Is(err, store.ErrConflict) || len(req.TargetsMetadata) > 0 || attempt == maxSignAttempts {
			return rel, err
		}
		if p.Log != nil {
			p.Log.Info("another replica signed meanwhile: signing again", "upload", req.UploadID, "err", err)
		}
	}
}

// maxSignAttempts bounds how often Publish signs again after losing a race.
const maxSignAttempts = 5

func (p *Publisher) publishOnce(ctx context.Context, req protocol.PublishRequest, actor string) (protocol.Release, error) {
	if !uploadIDRe.MatchString(req.UploadID) {
		return protocol.Release{}, fault.New(fault.Invalid, "upload_id %q is not valid: upload the bundle first (POST /api/v1/uploads)", req.UploadID)
	}
	su, err := p.Store.GetUpload(ctx, req.UploadID)
	if errors.Is(err, store.ErrNotFound) {
		return protocol.Release{}, fault.New(fault.NotFound, "upload %s is unknown or was already published: upload the bundle again", req.UploadID)
	}
	if err != nil {
		return protocol.Release{}, err
	}
	var up protocol.Upload
	if err := json.Unmarshal([]byte(su.Manifest), &up); err != nil {
		return protocol.Release{}, fmt.Errorf("read upload %s: %w", su.ID, err)
	}
	rel := Effective(up, req)
	if err := ValidateRelease(rel); err != nil {
		return protocol.Release{}, err
	}
	targetPath, tf, err := TargetFor(rel)
	if err != nil {
		return protocol.Release{}, err
	}
	now := p.now()
	rel.Target = targetPath
	rel.PublishedAt = now.UTC()
	rel.PublishedBy = actor
	if rel.Channels == nil {
		rel.Channels = []string{}
	}

	// Deltas are made before taking the lock (they take seconds) and only
	// where this server signs: an offline signer signs one target.
	var deltas []madeDelta
	if len(req.TargetsMetadata) == 0 {
		if _, err := p.Store.GetRelease(ctx, rel.Product, rel.Version); errors.Is(err, store.ErrNotFound) {
			deltas = p.makeDeltas(ctx, rel, p.uploadPath(su.ID))
		}
	}
	defer func() { discardDeltas(deltas) }()

	p.mu.Lock()
	defer p.mu.Unlock()
	if _, err := p.Store.GetRelease(ctx, rel.Product, rel.Version); err == nil {
		return protocol.Release{}, fault.New(fault.Conflict, "%s %s is already published; releases are immutable: publish a new version", rel.Product, rel.Version)
	}
	cur, err := p.CurrentSet(ctx)
	if err != nil {
		return protocol.Release{}, err
	}
	var targets []byte
	if len(req.TargetsMetadata) > 0 {
		targets = req.TargetsMetadata
		if err := tufrepo.CheckTargetsUpdate(cur.Root, cur.Targets, targets, targetPath, tf, now); err != nil {
			if strings.Contains(err.Error(), "someone published meanwhile") {
				return protocol.Release{}, fault.Wrap(fault.Conflict, err)
			}
			return protocol.Release{}, fault.Wrap(fault.Invalid, err)
		}
	} else {
		signer, err := p.Repo.Keys.Signer(tufrepo.RoleTargets)
		if errors.Is(err, tufrepo.ErrKeyOffline) {
			return protocol.Release{}, fault.New(fault.Conflict, "this server does not hold the targets key: sign the release yourself with release publish --sign-key FILE")
		}
		if err != nil {
			return protocol.Release{}, err
		}
		if targets, err = tufrepo.AddTargets(cur.Targets, deltaTargets(targetPath, tf, deltas), now.Add(p.Repo.Expiry.Targets), signer); err != nil {
			return protocol.Release{}, err
		}
	}
	next, err := p.Repo.WithTargets(cur, targets, now)
	if err != nil {
		return protocol.Release{}, err
	}

	// The target file is content-addressed (<sha256>.<name>, as TUF clients
	// fetch it with consistent snapshots), so placing it before the
	// metadata that names it exists is harmless; on failure it goes back
	// to the staging area.
	dst := filepath.Join(p.TargetsDir, filepath.FromSlash(path.Dir(targetPath)), rel.SHA256+"."+path.Base(targetPath))
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return protocol.Release{}, fmt.Errorf("place target: %w", err)
	}
	placedDeltas, err := p.placeDeltas(deltas)
	if err != nil {
		return protocol.Release{}, err
	}
	if err := atomicfile.Rename(p.uploadPath(su.ID), dst); err != nil {
		removeAll(placedDeltas)
		return protocol.Release{}, fmt.Errorf("place target: %w", err)
	}
	err = p.Store.PublishRelease(ctx, store.Publish{
		Release:  rel,
		Metadata: metadataRows(next, tufrepo.RoleTargets, tufrepo.RoleSnapshot, tufrepo.RoleTimestamp),
		UploadID: su.ID,
		Events:   []store.OutboxEvent{notify.ReleasePublishedEvent(rel, actor, now).Outbox()},
		Audit: store.Audit{Actor: actor, Action: "release.publish", Object: rel.Product + " " + rel.Version,
			Detail: fmt.Sprintf("sha256=%s length=%d channels=%s offline_signed=%t", rel.SHA256, rel.Length, strings.Join(rel.Channels, ","), len(req.TargetsMetadata) > 0)},
	})
	if err != nil {
		removeAll(placedDeltas)
		if rerr := os.Rename(dst, p.uploadPath(su.ID)); rerr != nil {
			p.Log.Error("could not return target to staging", "path", dst, "err", rerr)
		}
		if errors.Is(err, store.ErrConflict) {
			return protocol.Release{}, fault.Wrap(fault.Conflict, err)
		}
		return protocol.Release{}, fmt.Errorf("publish %s %s: %w", rel.Product, rel.Version, err)
	}
	for _, d := range deltas {
		rel.Deltas = append(rel.Deltas, d.Delta)
	}
	p.Log.Info("release published", "product", rel.Product, "version", rel.Version, "sha256", rel.SHA256, "channels", rel.Channels, "deltas", len(deltas), "by", actor)
	p.changed(ReleaseChange{Kind: ChangePublish, Product: rel.Product, Version: rel.Version})
	return rel, nil
}

// Release returns one release.
func (p *Publisher) Release(ctx context.Context, product, version string) (protocol.Release, error) {
	r, err := p.Store.GetRelease(ctx, product, version)
	if errors.Is(err, store.ErrNotFound) {
		return r, fault.New(fault.NotFound, "%s %s is not published: see release list", product, version)
	}
	if err != nil {
		return r, err
	}
	r.Deltas, err = p.ReleaseDeltas(ctx, product, version)
	return r, err
}

// Promote puts a published release on a channel.
func (p *Publisher) Promote(ctx context.Context, product, version, channel, actor string) (protocol.Release, error) {
	if err := ValidateChannel(channel); err != nil {
		return protocol.Release{}, err
	}
	r, err := p.Release(ctx, product, version)
	if err != nil {
		return r, err
	}
	if r.Yanked {
		return r, fault.New(fault.Conflict, "%s %s is yanked (%s) and cannot be promoted", r.Product, r.Version, r.YankReason)
	}
	now := p.now()
	added, err := p.Store.Promote(ctx, now, r, channel, store.Audit{Actor: actor, Action: "release.promote", Object: r.Product + " " + r.Version, Detail: "channel=" + channel},
		notify.ReleasePromotedEvent(withChannel(r, channel), channel, actor, now).Outbox())
	if err != nil {
		return r, fmt.Errorf("promote: %w", err)
	}
	if added {
		p.changed(ReleaseChange{Kind: ChangePromote, Product: r.Product, Version: r.Version, Channel: channel})
	}
	return p.Release(ctx, product, version)
}

// withChannel is r with channel added to its channels.
func withChannel(r protocol.Release, channel string) protocol.Release {
	if !slices.Contains(r.Channels, channel) {
		r.Channels = append(slices.Clip(r.Channels), channel)
	}
	return r
}

// Yank withdraws a release: it is never offered again.
func (p *Publisher) Yank(ctx context.Context, product, version, reason, actor string) (protocol.Release, error) {
	if len(reason) > 4096 {
		return protocol.Release{}, fault.New(fault.Invalid, "the yank reason is longer than 4096 bytes")
	}
	r, err := p.Release(ctx, product, version)
	if err != nil {
		return r, err
	}
	now := p.now()
	yanked, err := p.Store.Yank(ctx, now, r, reason, store.Audit{Actor: actor, Action: "release.yank", Object: r.Product + " " + r.Version, Detail: "reason=" + reason},
		notify.ReleaseYankedEvent(r, reason, actor, now).Outbox())
	if err != nil {
		return r, err
	}
	if yanked {
		p.changed(ReleaseChange{Kind: ChangeYank, Product: r.Product, Version: r.Version})
	}
	return p.Release(ctx, product, version)
}

// Refresh re-signs metadata close to expiry and stores it.
func (p *Publisher) Refresh(ctx context.Context) (changed, warnings []string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	cur, err := p.CurrentSet(ctx)
	if err != nil {
		return nil, nil, err
	}
	next, changed, warnings, err := p.Repo.Refresh(cur, p.now())
	if err != nil || len(changed) == 0 {
		return changed, warnings, err
	}
	err = p.Store.SaveMetadata(ctx, p.now(), metadataRows(next, changed...), nil)
	return changed, warnings, err
}

// RunRefresher calls Refresh every interval until ctx ends, logging what it
// re-signed and, at most hourly, what it cannot renew.
func (p *Publisher) RunRefresher(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	var lastWarn time.Time
	for {
		changed, warnings, err := p.Refresh(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			p.Log.Error("re-signing metadata failed", "err", err)
		case len(changed) > 0:
			p.Log.Info("metadata re-signed", "roles", changed)
		}
		if len(warnings) > 0 && time.Since(lastWarn) > time.Hour {
			for _, w := range warnings {
				p.Log.Warn(w)
			}
			lastWarn = time.Now()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// CleanStaging removes what no upload can still be using: the partial
// files of uploads that were cut off (a killed server, a dropped
// connection), and complete files that no upload row records (a crash
// between staging and recording). Staged uploads that are complete and
// recorded stay, to be published. Call it at start, before the server
// takes uploads, with the data dir locked; it returns how many files it
// removed.
func (p *Publisher) CleanStaging(ctx context.Context) (int, error) {
	entries, err := os.ReadDir(p.UploadsDir)
	if err != nil {
		return 0, fmt.Errorf("clean staged uploads: %w", err)
	}
	removed := 0
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() {
			continue
		}
		switch {
		case strings.HasSuffix(name, ".part"):
		case strings.HasSuffix(name, ".tar.gz") && uploadIDRe.MatchString(strings.TrimSuffix(name, ".tar.gz")):
			_, err := p.Store.GetUpload(ctx, strings.TrimSuffix(name, ".tar.gz"))
			if err == nil {
				continue // complete and recorded
			}
			if !errors.Is(err, store.ErrNotFound) {
				return removed, fmt.Errorf("clean staged uploads: %w", err)
			}
		default:
			continue
		}
		if err := os.Remove(filepath.Join(p.UploadsDir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return removed, fmt.Errorf("clean staged uploads: %w", err)
		}
		removed++
	}
	return removed, nil
}

// CleanUploads removes staged uploads older than age.
func (p *Publisher) CleanUploads(ctx context.Context, age time.Duration) error {
	ids, err := p.Store.DeleteUploadsBefore(ctx, p.now().Add(-age))
	if err != nil {
		return err
	}
	for _, id := range ids {
		os.Remove(p.uploadPath(id))
	}
	// Partial files of uploads cut off by a crash.
	parts, _ := filepath.Glob(filepath.Join(p.UploadsDir, "*.part"))
	for _, part := range parts {
		if fi, err := os.Stat(part); err == nil && time.Since(fi.ModTime()) > age {
			os.Remove(part)
		}
	}
	return nil
}
