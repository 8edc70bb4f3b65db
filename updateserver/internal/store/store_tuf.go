package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Metadata is one signed version of a TUF role.
type Metadata struct {
	Role      string
	Version   int64
	Data      []byte
	CreatedAt time.Time
}

// LatestMetadata returns the newest version of role.
func (s *Store) LatestMetadata(ctx context.Context, role string) (Metadata, error) {
	return s.metadata(ctx, `SELECT role, version, data, created_at FROM tuf_metadata WHERE role = ? ORDER BY version DESC LIMIT 1`, role)
}

// MetadataVersion returns version v of role.
func (s *Store) MetadataVersion(ctx context.Context, role string, v int64) (Metadata, error) {
	return s.metadata(ctx, `SELECT role, version, data, created_at FROM tuf_metadata WHERE role = ? AND version = ?`, role, v)
}

// RootVersions returns every root version, oldest first: a mirror needs
// the whole chain so that clients pinned to an old root can follow it.
func (s *Store) RootVersions(ctx context.Context) ([]Metadata, error) {
	rows, err := s.query(ctx, `SELECT role, version, data, created_at FROM tuf_metadata WHERE role = 'root' ORDER BY version`)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanMetadata)
}

func (s *Store) metadata(ctx context.Context, q string, args ...any) (Metadata, error) {
	m, err := scanMetadata(s.queryRow(ctx, q, args...))
	if errors.Is(err, sql.ErrNoRows) {
		return Metadata{}, ErrNotFound
	}
	return m, err
}

type scanner interface{ Scan(...any) error }

func scanMetadata(r scanner) (Metadata, error) {
	var m Metadata
	var at string
	if err := r.Scan(&m.Role, &m.Version, &m.Data, &at); err != nil {
		return Metadata{}, err
	}
	m.CreatedAt = parseTime(at)
	return m, nil
}

// SaveMetadata stores newly signed metadata versions in one transaction.
// A version that already exists is ErrConflict: someone else signed
// meanwhile.
func (s *Store) SaveMetadata(ctx context.Context, now time.Time, mds []Metadata, audit *Audit) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if err := insertMetadata(ctx, tx, now, mds); err != nil {
			return err
		}
		if audit != nil {
			return insertAudit(ctx, tx, now, *audit)
		}
		return nil
	})
}

// keepTimestamps is how many timestamp versions are kept: clients only
// ever fetch the newest (timestamp.json is not versioned on the wire).
const keepTimestamps = 2

func insertMetadata(ctx context.Context, tx *sql.Tx, now time.Time, mds []Metadata) error {
	for _, m := range mds {
		_, err := tx.Exec(
			`INSERT INTO tuf_metadata (role, version, data, created_at) VALUES (?, ?, ?, ?)`,
			m.Role, m.Version, m.Data, formatTime(now))
		if err != nil {
			if isUniqueViolation(err) {
				return fmt.Errorf("%s metadata version %d: %w", m.Role, m.Version, ErrConflict)
			}
			return fmt.Errorf("save %s metadata version %d: %w", m.Role, m.Version, err)
		}
		if m.Role == "timestamp" {
			if _, err := tx.Exec(`DELETE FROM tuf_metadata WHERE role = 'timestamp' AND version <= ?`, m.Version-keepTimestamps); err != nil {
				return err
			}
		}
	}
	return nil
}
