package store

import (
	"context"
	"database/sql"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
)

// Audit is one change to record: who did what to which object.
type Audit struct {
	Actor, Action, Object, Detail string
}

func insertAudit(ctx context.Context, tx *sql.Tx, at time.Time, a Audit) error {
	_, err := tx.Exec(
		`INSERT INTO audit_log (at, actor, action, object, detail) VALUES (?, ?, ?, ?, ?)`,
		formatTime(at), a.Actor, a.Action, a.Object, a.Detail)
	return err
}

// AuditLog returns the newest limit audit entries, newest first.
func (s *Store) AuditLog(ctx context.Context, limit int) ([]protocol.AuditEntry, error) {
	rows, err := s.db.QueryContext(ctx,
		`SELECT id, at, actor, action, object, detail FROM audit_log ORDER BY id DESC LIMIT ?`, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []protocol.AuditEntry{}
	for rows.Next() {
		var e protocol.AuditEntry
		var at string
		if err := rows.Scan(&e.ID, &at, &e.Actor, &e.Action, &e.Object, &e.Detail); err != nil {
			return nil, err
		}
		e.At = parseTime(at)
		out = append(out, e)
	}
	return out, rows.Err()
}
