package store

import (
	"context"
	"database/sql"
	"errors"
	"time"
)

// Upload is a bundle received and validated, waiting to be published.
type Upload struct {
	ID        string
	SHA256    string
	Length    int64
	Manifest  string // JSON of the bundle's manifest fields
	CreatedAt time.Time
	CreatedBy string
}

// InsertUpload records a staged upload.
func (s *Store) InsertUpload(ctx context.Context, u Upload) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.Exec(`INSERT INTO uploads (id, sha256, length, manifest, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?)`,
			u.ID, u.SHA256, u.Length, u.Manifest, formatTime(u.CreatedAt), u.CreatedBy)
		return err
	})
}

// GetUpload returns a staged upload.
func (s *Store) GetUpload(ctx context.Context, id string) (Upload, error) {
	var u Upload
	var at string
	err := s.queryRow(ctx,
		`SELECT id, sha256, length, manifest, created_at, created_by FROM uploads WHERE id = ?`, id).
		Scan(&u.ID, &u.SHA256, &u.Length, &u.Manifest, &at, &u.CreatedBy)
	if errors.Is(err, sql.ErrNoRows) {
		return Upload{}, ErrNotFound
	}
	u.CreatedAt = parseTime(at)
	return u, err
}

// DeleteUploadsBefore forgets uploads staged before t and returns their IDs
// so the caller can remove their files.
func (s *Store) DeleteUploadsBefore(ctx context.Context, t time.Time) ([]string, error) {
	var ids []string
	err := s.tx(ctx, func(tx *sql.Tx) error {
		ids = nil
		rows, err := tx.Query(`SELECT id FROM uploads WHERE created_at < ?`, formatTime(t))
		if err != nil {
			return err
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return err
			}
			ids = append(ids, id)
		}
		rows.Close()
		_, err = tx.Exec(`DELETE FROM uploads WHERE created_at < ?`, formatTime(t))
		return err
	})
	return ids, err
}
