package store

import (
	"context"
	"database/sql"
	"errors"
	"time"
)

// AcquireLease makes holder the holder of the lease name until now+ttl,
// when the lease is free, expired or already holder's (a renewal). It
// reports whether holder holds it now; false means another holder's lease
// has not expired.
//
// One statement, so two replicas racing for a free lease cannot both win:
// the loser's upsert finds the winner's unexpired row and changes nothing.
func (s *Store) AcquireLease(ctx context.Context, now time.Time, name, holder string, ttl time.Duration) (bool, error) {
	got := false
	err := s.leaseTx(ctx, func(ex execer) error {
		got = false
		var h string
		err := ex.QueryRowContext(ctx, `
INSERT INTO leases (name, holder, expires_ns) VALUES (?, ?, ?)
ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_ns = excluded.expires_ns
WHERE leases.expires_ns < ? OR leases.holder = ?
RETURNING holder`, name, holder, now.Add(ttl).UnixNano(), now.UnixNano(), holder).Scan(&h)
		if errors.Is(err, sql.ErrNoRows) {
			return nil // held by another, not expired: nothing changed
		}
		got = err == nil && h == holder
		return err
	})
	return got, err
}

// ReleaseLease gives the lease name up, if holder holds it, so that
// another replica takes it at once instead of when it expires.
func (s *Store) ReleaseLease(ctx context.Context, name, holder string) error {
	return s.leaseTx(ctx, func(ex execer) error {
		_, err := ex.ExecContext(ctx, `DELETE FROM leases WHERE name = ? AND holder = ?`, name, holder)
		return err
	})
}

// execer is a transaction or a pool.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// leaseTx runs a lease's one statement. On PostgreSQL it runs on a
// connection of its own, neither queued behind the writer's groups nor
// behind the agents' reads: it is atomic by itself, needs no write lock,
// and a renewal that waited behind thousands of agents' writes or reads
// for longer than the lease lasts lost the lease (the rollouts stopped in
// the middle of a 20,000-agent run). On SQLite it is a write of the
// writer's, the one write connection.
func (s *Store) leaseTx(ctx context.Context, fn func(execer) error) error {
	if s.dialect == Postgres {
		return fn(s.ldb)
	}
	return s.tx(ctx, func(tx *sql.Tx) error {
		// No ctx of the caller's inside the writer's group (see tx).
		return fn(noCtx{tx})
	})
}

// noCtx is a transaction whose statements ignore the context given.
type noCtx struct{ tx *sql.Tx }

func (n noCtx) ExecContext(_ context.Context, q string, args ...any) (sql.Result, error) {
	return n.tx.Exec(q, args...)
}

func (n noCtx) QueryRowContext(_ context.Context, q string, args ...any) *sql.Row {
	return n.tx.QueryRow(q, args...)
}

// Lease is who holds a lease, and until when.
type Lease struct {
	Name, Holder string
	Expires      time.Time
}

// Leases lists the leases, held or expired, by name.
func (s *Store) Leases(ctx context.Context) ([]Lease, error) {
	rows, err := s.query(ctx, `SELECT name, holder, expires_ns FROM leases ORDER BY name`)
	if err != nil {
		return nil, err
	}
	return collect(rows, func(r scanner) (Lease, error) {
		var l Lease
		var exp int64
		err := r.Scan(&l.Name, &l.Holder, &exp)
		l.Expires = time.Unix(0, exp).UTC()
		return l, err
	})
}

// Shared says whether several servers may use this store at once
// (replicas on PostgreSQL), so that periodic jobs must run under a lease
// and wake-ups travel between processes. SQLite is one server's (its data
// directory is locked).
func (s *Store) Shared() bool { return s.dialect == Postgres }
