// Package tufrepo builds and signs the server's TUF repository with go-tuf's
// metadata package: root, targets, snapshot and timestamp, with consistent
// snapshots, one target per published bundle.
//
// It is pure with respect to storage: functions take the current signed
// metadata as bytes and return the next, and the caller persists them (the
// server keeps them in its store, in one transaction with the release). The
// private keys live in a KeyStore; the targets key may be absent, in which
// case the release team signs targets metadata on its own machine and the
// server checks it with CheckTargetsUpdate.
package tufrepo

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/dropless/dropless/pkg/protocol"
)

// Top-level role names.
const (
	RoleRoot      = "root"
	RoleTargets   = "targets"
	RoleSnapshot  = "snapshot"
	RoleTimestamp = "timestamp"
)

// TopLevelRoles lists the roles of a repository, root first.
var TopLevelRoles = []string{RoleRoot, RoleTargets, RoleSnapshot, RoleTimestamp}

// Expiry is how long each role's metadata stays valid after signing.
type Expiry struct {
	Root, Targets, Snapshot, Timestamp time.Duration
}

// DefaultExpiry: root and targets a year (the targets key may be offline, so
// its signature must last between releases), snapshot a week, timestamp a
// day (re-signed by the running server before it runs out).
func DefaultExpiry() Expiry {
	return Expiry{
		Root:      365 * 24 * time.Hour,
		Targets:   365 * 24 * time.Hour,
		Snapshot:  7 * 24 * time.Hour,
		Timestamp: 24 * time.Hour,
	}
}

// Validate checks every duration is positive.
func (e Expiry) Validate() error {
	for name, d := range map[string]time.Duration{"root": e.Root, "targets": e.Targets, "snapshot": e.Snapshot, "timestamp": e.Timestamp} {
		if d < time.Second {
			return fmt.Errorf("%s expiry %v is too short: use at least 1s", name, d)
		}
	}
	return nil
}

// Set is the current signed metadata of the four top-level roles.
type Set struct {
	Root, Targets, Snapshot, Timestamp []byte
}

// Repo signs metadata with the keys in Keys and the lifetimes in Expiry.
type Repo struct {
	Keys   KeyStore
	Expiry Expiry
}

// Initial builds version 1 of every role: a root naming one key per role,
// empty targets, and the snapshot and timestamp over them.
func (r Repo) Initial(now time.Time) (Set, error) {
	signers := map[string]*Signer{}
	for _, role := range TopLevelRoles {
		s, err := r.Keys.Signer(role)
		if err != nil {
			return Set{}, fmt.Errorf("initial metadata: %w", err)
		}
		signers[role] = s
	}
	root := metadata.Root(expires(now, r.Expiry.Root))
	root.Signed.ConsistentSnapshot = true
	for _, role := range TopLevelRoles {
		if err := root.Signed.AddKey(signers[role].Key, role); err != nil {
			return Set{}, fmt.Errorf("initial root: add %s key: %w", role, err)
		}
	}
	rootBytes, err := sign(root, signers[RoleRoot])
	if err != nil {
		return Set{}, err
	}
	targets := metadata.Targets(expires(now, r.Expiry.Targets))
	targetsBytes, err := sign(targets, signers[RoleTargets])
	if err != nil {
		return Set{}, err
	}
	set := Set{Root: rootBytes, Targets: targetsBytes}
	return r.withSnapshot(set, 1, 1, now)
}

// WithTargets returns cur with targets replaced and a new snapshot and
// timestamp signed by the online keys.
func (r Repo) WithTargets(cur Set, targets []byte, now time.Time) (Set, error) {
	snap, err := parse[metadata.SnapshotType](cur.Snapshot)
	if err != nil {
		return Set{}, err
	}
	ts, err := parse[metadata.TimestampType](cur.Timestamp)
	if err != nil {
		return Set{}, err
	}
	next := cur
	next.Targets = targets
	return r.withSnapshot(next, snap.Signed.Version+1, ts.Signed.Version+1, now)
}

// withSnapshot signs snapshot version snapV over set.Targets and timestamp
// version tsV over that snapshot.
func (r Repo) withSnapshot(set Set, snapV, tsV int64, now time.Time) (Set, error) {
	targets, err := parse[metadata.TargetsType](set.Targets)
	if err != nil {
		return Set{}, err
	}
	snapSigner, err := r.Keys.Signer(RoleSnapshot)
	if err != nil {
		return Set{}, err
	}
	snap := metadata.Snapshot(expires(now, r.Expiry.Snapshot))
	snap.Signed.Version = snapV
	snap.Signed.Meta["targets.json"] = metadata.MetaFile(targets.Signed.Version)
	if set.Snapshot, err = sign(snap, snapSigner); err != nil {
		return Set{}, err
	}
	return r.withTimestamp(set, tsV, now)
}

// withTimestamp signs timestamp version tsV over set.Snapshot. The
// timestamp carries the snapshot's length and hash as well as its version.
func (r Repo) withTimestamp(set Set, tsV int64, now time.Time) (Set, error) {
	snap, err := parse[metadata.SnapshotType](set.Snapshot)
	if err != nil {
		return Set{}, err
	}
	tsSigner, err := r.Keys.Signer(RoleTimestamp)
	if err != nil {
		return Set{}, err
	}
	ts := metadata.Timestamp(expires(now, r.Expiry.Timestamp))
	ts.Signed.Version = tsV
	sum := sha256.Sum256(set.Snapshot)
	mf := metadata.MetaFile(snap.Signed.Version)
	mf.Length = int64(len(set.Snapshot))
	mf.Hashes = metadata.Hashes{"sha256": sum[:]}
	ts.Signed.Meta["snapshot.json"] = mf
	if set.Timestamp, err = sign(ts, tsSigner); err != nil {
		return Set{}, err
	}
	return set, nil
}

// Refresh re-signs what is close to expiry: the timestamp and snapshot when
// less than a quarter of their lifetime is left, and targets likewise if the
// targets key is on this server. It returns the new set and the roles it
// re-signed (none: the set is unchanged). warnings name metadata that will
// expire and that this server cannot renew.
func (r Repo) Refresh(cur Set, now time.Time) (next Set, changed []string, warnings []string, err error) {
	next = cur
	targets, err := parse[metadata.TargetsType](cur.Targets)
	if err != nil {
		return cur, nil, nil, err
	}
	snap, err := parse[metadata.SnapshotType](cur.Snapshot)
	if err != nil {
		return cur, nil, nil, err
	}
	ts, err := parse[metadata.TimestampType](cur.Timestamp)
	if err != nil {
		return cur, nil, nil, err
	}
	root, err := parse[metadata.RootType](cur.Root)
	if err != nil {
		return cur, nil, nil, err
	}
	if due(root.Signed.Expires, now, 30*24*time.Hour) {
		warnings = append(warnings, fmt.Sprintf("root metadata expires %s: sign a new root version before then", root.Signed.Expires.Format(time.RFC3339)))
	}
	if due(targets.Signed.Expires, now, r.Expiry.Targets/4) {
		signer, serr := r.Keys.Signer(RoleTargets)
		switch {
		case errors.Is(serr, ErrKeyOffline):
			warnings = append(warnings, fmt.Sprintf("targets metadata expires %s and the targets key is offline: publish a release with --sign-key to renew it", targets.Signed.Expires.Format(time.RFC3339)))
		case serr != nil:
			return cur, nil, nil, serr
		default:
			targets.Signed.Version++
			targets.Signed.Expires = expires(now, r.Expiry.Targets)
			targets.ClearSignatures()
			if next.Targets, err = sign(targets, signer); err != nil {
				return cur, nil, nil, err
			}
			changed = append(changed, RoleTargets)
		}
	}
	switch {
	case len(changed) > 0 || due(snap.Signed.Expires, now, r.Expiry.Snapshot/4):
		next, err = r.withSnapshot(next, snap.Signed.Version+1, ts.Signed.Version+1, now)
		changed = append(changed, RoleSnapshot, RoleTimestamp)
	case due(ts.Signed.Expires, now, r.Expiry.Timestamp/4):
		next, err = r.withTimestamp(next, ts.Signed.Version+1, now)
		changed = append(changed, RoleTimestamp)
	}
	if err != nil {
		return cur, nil, nil, err
	}
	return next, changed, warnings, nil
}

// due reports whether exp falls within margin of now.
func due(exp, now time.Time, margin time.Duration) bool {
	return !now.Add(margin).Before(exp)
}

// NewTargetFile describes a bundle as a TUF target: its length, sha256 and the
// custom metadata agents read (product, version, upgrade_from).
func NewTargetFile(custom protocol.TargetCustom, sha256Hex string, length int64) (*metadata.TargetFiles, error) {
	sum, err := decodeHex(sha256Hex)
	if err != nil || len(sum) != sha256.Size {
		return nil, fmt.Errorf("sha256 %q is not a hex SHA-256 digest", sha256Hex)
	}
	raw, err := json.Marshal(custom)
	if err != nil {
		return nil, err
	}
	rm := json.RawMessage(raw)
	tf := metadata.TargetFile()
	tf.Length = length
	tf.Hashes = metadata.Hashes{"sha256": sum}
	tf.Custom = &rm
	return tf, nil
}

// AddTarget returns targets metadata cur extended by target path -> tf, with
// the version bumped, a fresh expiry and s's signature only.
func AddTarget(cur []byte, path string, tf *metadata.TargetFiles, exp time.Time, s *Signer) ([]byte, error) {
	return AddTargets(cur, map[string]*metadata.TargetFiles{path: tf}, exp, s)
}

// AddTargets is AddTarget for several targets at once (a release and its
// deltas), in one new version.
func AddTargets(cur []byte, add map[string]*metadata.TargetFiles, exp time.Time, s *Signer) ([]byte, error) {
	md, err := parse[metadata.TargetsType](cur)
	if err != nil {
		return nil, err
	}
	for path, tf := range add {
		if _, ok := md.Signed.Targets[path]; ok {
			return nil, fmt.Errorf("target %s is already in the targets metadata", path)
		}
		md.Signed.Targets[path] = tf
	}
	md.Signed.Version++
	md.Signed.Expires = exp.UTC().Truncate(time.Second)
	md.ClearSignatures()
	return sign(md, s)
}

// VerifySignedBy checks targets metadata carries a valid signature of s.
// An offline signer uses it to refuse extending metadata a compromised
// server forged.
func VerifySignedBy(targets []byte, s *Signer) error {
	md, err := parse[metadata.TargetsType](targets)
	if err != nil {
		return err
	}
	// A throwaway root that trusts only s for targets, threshold 1.
	root := metadata.Root()
	if err := root.Signed.AddKey(s.Key, RoleTargets); err != nil {
		return err
	}
	if err := root.VerifyDelegate(RoleTargets, md); err != nil {
		return fmt.Errorf("the server's current targets metadata (version %d) is not signed by this key: refusing to extend it (%v)", md.Signed.Version, err)
	}
	return nil
}

func expires(now time.Time, d time.Duration) time.Time {
	return now.Add(d).UTC().Truncate(time.Second)
}

func sign[T metadata.Roles](md *metadata.Metadata[T], s *Signer) ([]byte, error) {
	if _, err := md.Sign(s.Signer); err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	b, err := md.ToBytes(true)
	if err != nil {
		return nil, fmt.Errorf("encode metadata: %w", err)
	}
	return b, nil
}

func parse[T metadata.Roles](b []byte) (*metadata.Metadata[T], error) {
	var md metadata.Metadata[T]
	out, err := md.FromBytes(b)
	if err != nil {
		return nil, fmt.Errorf("parse metadata: %w", err)
	}
	return out, nil
}

// TargetFile is go-tuf's description of one target.
type TargetFile = metadata.TargetFiles
