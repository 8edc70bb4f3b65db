package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/pkg/versions"
)

// Publish is everything that becomes visible at once when a release is
// published: the release row, its channels, the new TUF metadata versions,
// the consumed upload and the audit entry.
type Publish struct {
	Release  protocol.Release
	Metadata []Metadata
	UploadID string
	Audit    Audit
	// Events go to the webhook outbox in the same transaction.
	Events []OutboxEvent
}

// PublishRelease commits p in one transaction: either all of it is stored or
// nothing is. A release whose version already exists (in any spelling: 1.2
// is 1.2.0) is ErrConflict, as is metadata someone else signed meanwhile.
func (s *Store) PublishRelease(ctx context.Context, p Publish) error {
	r := p.Release
	return s.tx(ctx, func(tx *sql.Tx) error {
		existing, err := productVersions(ctx, tx, r.Product)
		if err != nil {
			return err
		}
		for _, v := range existing {
			if versions.Equal(v, r.Version) {
				return fmt.Errorf("%s %s is already published (as %s); releases are immutable, publish a new version: %w", r.Product, r.Version, v, ErrConflict)
			}
		}
		_, err = tx.Exec(`INSERT INTO releases
			(product, version, target_path, sha256, length, upgrade_from, notes, published_at, published_by)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			r.Product, r.Version, r.Target, r.SHA256, r.Length, r.UpgradeFrom, r.Notes, formatTime(r.PublishedAt), r.PublishedBy)
		if err != nil {
			if isUniqueViolation(err) {
				return fmt.Errorf("%s %s is already published: %w", r.Product, r.Version, ErrConflict)
			}
			return err
		}
		for _, ch := range r.Channels {
			if _, err := tx.Exec(`INSERT INTO release_channels (product, version, channel, added_at, added_by) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
				r.Product, r.Version, ch, formatTime(r.PublishedAt), r.PublishedBy); err != nil {
				return err
			}
		}
		if err := insertMetadata(ctx, tx, r.PublishedAt, p.Metadata); err != nil {
			return err
		}
		if p.UploadID != "" {
			if _, err := tx.Exec(`DELETE FROM uploads WHERE id = ?`, p.UploadID); err != nil {
				return err
			}
		}
		if err := enqueue(tx, r.PublishedAt, p.Events); err != nil {
			return err
		}
		return insertAudit(ctx, tx, r.PublishedAt, p.Audit)
	})
}

func productVersions(ctx context.Context, tx *sql.Tx, product string) ([]string, error) {
	rows, err := tx.Query(`SELECT version FROM releases WHERE product = ?`, product)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// ReleaseFilter selects releases; empty fields match everything.
type ReleaseFilter struct {
	Product string
	Channel string
}

// ListReleases returns matching releases, by product, newest version first.
func (s *Store) ListReleases(ctx context.Context, f ReleaseFilter) ([]protocol.Release, error) {
	q := `SELECT product, version, target_path, sha256, length, upgrade_from, notes, published_at, published_by,
		yanked_at, yank_reason,
		COALESCE((SELECT string_agg(channel, '` + "\n" + `' ORDER BY added_at, channel) FROM release_channels c
			WHERE c.product = r.product AND c.version = r.version), '')
		FROM releases r WHERE 1=1`
	var args []any
	if f.Product != "" {
		q += ` AND product = ?`
		args = append(args, f.Product)
	}
	if f.Channel != "" {
		q += ` AND EXISTS (SELECT 1 FROM release_channels c WHERE c.product = r.product AND c.version = r.version AND c.channel = ?)`
		args = append(args, f.Channel)
	}
	rows, err := s.query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list releases: %w", err)
	}
	defer rows.Close()
	out := []protocol.Release{}
	for rows.Next() {
		var r protocol.Release
		var published, channels string
		var yanked sql.NullString
		if err := rows.Scan(&r.Product, &r.Version, &r.Target, &r.SHA256, &r.Length, &r.UpgradeFrom, &r.Notes,
			&published, &r.PublishedBy, &yanked, &r.YankReason, &channels); err != nil {
			return nil, err
		}
		r.PublishedAt = parseTime(published)
		r.YankedAt = nullTime(yanked)
		r.Yanked = yanked.Valid
		r.Channels = []string{}
		if channels != "" {
			r.Channels = strings.Split(channels, "\n")
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Product != out[j].Product {
			return out[i].Product < out[j].Product
		}
		return versions.Compare(out[i].Version, out[j].Version) > 0
	})
	return out, nil
}

// GetRelease finds product's release whose version equals version (1.2
// finds 1.2.0).
func (s *Store) GetRelease(ctx context.Context, product, version string) (protocol.Release, error) {
	rs, err := s.ListReleases(ctx, ReleaseFilter{Product: product})
	if err != nil {
		return protocol.Release{}, err
	}
	for _, r := range rs {
		if versions.Equal(r.Version, version) {
			return r, nil
		}
	}
	return protocol.Release{}, ErrNotFound
}

// Promote puts a release on channel. It reports false when it already was.
// events go to the webhook outbox in the same transaction (none when it
// already was).
func (s *Store) Promote(ctx context.Context, now time.Time, r protocol.Release, channel string, a Audit, events ...OutboxEvent) (bool, error) {
	added := false
	err := s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.Exec(`INSERT INTO release_channels (product, version, channel, added_at, added_by) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
			r.Product, r.Version, channel, formatTime(now), a.Actor)
		if err != nil {
			return err
		}
		n, _ := res.RowsAffected()
		if added = n > 0; !added {
			return nil
		}
		if err := enqueue(tx, now, events); err != nil {
			return err
		}
		return insertAudit(ctx, tx, now, a)
	})
	return added, err
}

// Yank marks a release as never to be offered again. It reports false when
// it already was yanked. events go to the webhook outbox in the same
// transaction (none when it already was).
func (s *Store) Yank(ctx context.Context, now time.Time, r protocol.Release, reason string, a Audit, events ...OutboxEvent) (bool, error) {
	yanked := false
	err := s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.Exec(`UPDATE releases SET yanked_at = ?, yanked_by = ?, yank_reason = ?
			WHERE product = ? AND version = ? AND yanked_at IS NULL`,
			formatTime(now), a.Actor, reason, r.Product, r.Version)
		if err != nil {
			return err
		}
		n, _ := res.RowsAffected()
		if yanked = n > 0; !yanked {
			return nil
		}
		if err := enqueue(tx, now, events); err != nil {
			return err
		}
		return insertAudit(ctx, tx, now, a)
	})
	if err != nil && !errors.Is(err, ErrConflict) {
		err = fmt.Errorf("yank %s %s: %w", r.Product, r.Version, err)
	}
	return yanked, err
}
