package store

import (
	"context"
	"database/sql"
	"math"
	"strings"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
)

// Audit is one change to record: who did what to which object.
type Audit struct {
	Actor, Action, Object, Detail string
}

// insertAudit records a. An actor made by Token.Actor is stored with its
// token's name and ID besides, so the log is filtered by name in SQL.
func insertAudit(ctx context.Context, tx *sql.Tx, at time.Time, a Audit) error {
	name, tokenID := a.Actor, sql.NullInt64{}
	if n, id, ok := ParseActor(a.Actor); ok {
		name, tokenID = n, sql.NullInt64{Int64: id, Valid: true}
	}
	_, err := tx.Exec(
		`INSERT INTO audit_log (at, at_ns, actor, actor_name, token_id, action, object, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		formatTime(at), unixNano(at), a.Actor, name, tokenID, a.Action, a.Object, a.Detail)
	return err
}

// timedAudit is an audit entry and when it happened.
type timedAudit struct {
	Audit
	at time.Time
}

// auditsPerInsert is how many audit entries one INSERT of insertAudits
// holds (8 values each).
const auditsPerInsert = 500

// insertAudits records several entries as insertAudit does, in a few
// multi-row statements.
func insertAudits(tx *sql.Tx, entries []timedAudit) error {
	const cols = 8
	for i := 0; i < len(entries); i += auditsPerInsert {
		part := entries[i:min(i+auditsPerInsert, len(entries))]
		args := make([]any, 0, cols*len(part))
		for _, e := range part {
			name, tokenID := e.Actor, sql.NullInt64{}
			if n, id, ok := ParseActor(e.Actor); ok {
				name, tokenID = n, sql.NullInt64{Int64: id, Valid: true}
			}
			args = append(args, formatTime(e.at), unixNano(e.at), e.Actor, name, tokenID, e.Action, e.Object, e.Detail)
		}
		if _, err := tx.Exec(`INSERT INTO audit_log (at, at_ns, actor, actor_name, token_id, action, object, detail) VALUES `+valuesList(len(part), cols), args...); err != nil {
			return err
		}
	}
	return nil
}

// valuesList returns the VALUES of a multi-row INSERT: rows groups of
// cols placeholders, "(?, ?), (?, ?)".
func valuesList(rows, cols int) string {
	row := "(" + strings.Repeat("?, ", cols-1) + "?)"
	return row + strings.Repeat(", "+row, rows-1)
}

// AuditQuery selects audit entries. The zero value of each field selects
// everything; Limit must be positive.
type AuditQuery struct {
	Since  time.Time // entries at or after this time
	Actor  string    // entries of this actor: an operator token's name (every token of that name), or the whole actor of another (e.g. "updateserver")
	Before int64     // entries older than the entry with this ID: the cursor of the next page
	Limit  int       // at most this many
}

// AuditLog returns the audit entries q selects, newest first. The filters
// run in SQL on indexed columns: the log is never read whole.
func (s *Store) AuditLog(ctx context.Context, q AuditQuery) ([]protocol.AuditEntry, error) {
	var where []string
	var args []any
	if !q.Since.IsZero() {
		where = append(where, "at_ns >= ?")
		args = append(args, unixNano(q.Since))
	}
	if q.Actor != "" {
		where = append(where, "actor_name = ?")
		args = append(args, q.Actor)
	}
	if q.Before > 0 {
		where = append(where, "id < ?")
		args = append(args, q.Before)
	}
	query := `SELECT id, at, actor, actor_name, token_id, action, object, detail FROM audit_log`
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY id DESC LIMIT ?"
	args = append(args, q.Limit)
	rows, err := s.query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []protocol.AuditEntry{}
	for rows.Next() {
		var e protocol.AuditEntry
		var at string
		var tokenID sql.NullInt64
		if err := rows.Scan(&e.ID, &at, &e.Actor, &e.ActorName, &tokenID, &e.Action, &e.Object, &e.Detail); err != nil {
			return nil, err
		}
		e.At = parseTime(at)
		e.TokenID = tokenID.Int64
		out = append(out, e)
	}
	return out, rows.Err()
}

// unixNano is t in Unix nanoseconds, clamped to what an int64 holds (years
// 1678 to 2262), so a far-off time still compares as before or after
// every entry.
func unixNano(t time.Time) int64 {
	switch {
	case t.Before(time.Unix(0, math.MinInt64)):
		return math.MinInt64
	case t.After(time.Unix(0, math.MaxInt64)):
		return math.MaxInt64
	}
	return t.UnixNano()
}
