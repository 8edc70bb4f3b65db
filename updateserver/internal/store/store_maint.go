package store

import (
	"context"
	"database/sql"
	"strings"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
)

// Window scopes: a site's own window, or its client's.
const (
	ScopeSite   = "site"
	ScopeClient = "client"
)

// SetWindow stores (replacing) the window of a site or a client. The
// ranges and zone are stored as given; the caller has validated them.
func (s *Store) SetWindow(ctx context.Context, now time.Time, scope, name string, weekly []string, zone string, a Audit) error {
	defer s.maintChanged()
	return s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.Exec(`INSERT INTO windows (scope, name, weekly, zone, updated_at, updated_by) VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (scope, name) DO UPDATE SET weekly = excluded.weekly, zone = excluded.zone, updated_at = excluded.updated_at, updated_by = excluded.updated_by`,
			scope, name, strings.Join(weekly, "\n"), zone, formatTime(now), a.Actor); err != nil {
			return err
		}
		if err := s.tellCaches(tx, cacheMaint); err != nil {
			return err
		}
		return insertAudit(ctx, tx, now, a)
	})
}

// ClearWindow removes the window of a site or a client: ErrNotFound when
// it has none.
func (s *Store) ClearWindow(ctx context.Context, now time.Time, scope, name string, a Audit) error {
	defer s.maintChanged()
	return s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.Exec(`DELETE FROM windows WHERE scope = ? AND name = ?`, scope, name)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		if err := s.tellCaches(tx, cacheMaint); err != nil {
			return err
		}
		return insertAudit(ctx, tx, now, a)
	})
}

const windowColumns = `scope, name, weekly, zone, updated_at, updated_by`

func scanWindow(r scanner) (protocol.Window, error) {
	var w protocol.Window
	var scope, name, weekly, updated string
	err := r.Scan(&scope, &name, &weekly, &w.TZ, &updated, &w.UpdatedBy)
	if scope == ScopeSite {
		w.Site = name
	} else {
		w.Client = name
	}
	w.Weekly = strings.Split(weekly, "\n")
	w.UpdatedAt = parseTime(updated)
	return w, err
}

// Windows returns every stored window, for listing many sites at once.
func (s *Store) Windows(ctx context.Context) ([]protocol.Window, error) {
	rows, err := s.query(ctx, `SELECT `+windowColumns+` FROM windows ORDER BY scope, name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []protocol.Window{}
	for rows.Next() {
		w, err := scanWindow(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, w)
	}
	return out, rows.Err()
}

// CreateFreeze stores a freeze and returns its ID.
func (s *Store) CreateFreeze(ctx context.Context, now time.Time, f protocol.Freeze, a Audit) (int64, error) {
	var id int64
	defer s.maintChanged()
	err := s.tx(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRow(`INSERT INTO freezes (client, from_ns, to_ns, reason, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?) RETURNING id`,
			f.Client, unixNano(f.From), unixNano(f.To), f.Reason, formatTime(now), f.CreatedBy).Scan(&id)
		if err != nil {
			return err
		}
		if err := s.tellCaches(tx, cacheMaint); err != nil {
			return err
		}
		return insertAudit(ctx, tx, now, a)
	})
	return id, err
}

// DeleteFreeze removes a freeze: ErrNotFound when there is none with id.
func (s *Store) DeleteFreeze(ctx context.Context, now time.Time, id int64, a Audit) error {
	defer s.maintChanged()
	return s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.Exec(`DELETE FROM freezes WHERE id = ?`, id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		if err := s.tellCaches(tx, cacheMaint); err != nil {
			return err
		}
		return insertAudit(ctx, tx, now, a)
	})
}

// readFreezes returns the freezes not yet ended at now, soonest first.
func (s *Store) readFreezes(ctx context.Context, now time.Time) ([]protocol.Freeze, error) {
	rows, err := s.query(ctx, `SELECT id, client, from_ns, to_ns, reason, created_at, created_by FROM freezes
		WHERE to_ns > ? ORDER BY from_ns, id`, unixNano(now))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []protocol.Freeze{}
	for rows.Next() {
		var f protocol.Freeze
		var from, to int64
		var created string
		if err := rows.Scan(&f.ID, &f.Client, &from, &to, &f.Reason, &created, &f.CreatedBy); err != nil {
			return nil, err
		}
		f.From, f.To, f.CreatedAt = time.Unix(0, from).UTC(), time.Unix(0, to).UTC(), parseTime(created)
		out = append(out, f)
	}
	return out, rows.Err()
}
