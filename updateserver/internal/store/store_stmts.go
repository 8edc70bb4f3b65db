package store

import (
	"context"
	"database/sql"
	"sync"
)

// The read pool's prepared statements, kept for the store's life.
// Parsing a statement cost more than running it: under 10,000 agents'
// check-ins and job reports a fifth of the server's CPU went to SQLite's
// parser, preparing the same few reads again for every call. database/sql
// prepares a kept *sql.Stmt once on each pool connection it meets.
//
// The SQLite writer's statements are kept the same way, on its one
// connection (Store.wconn, txStmt).
type stmtCache struct {
	mu sync.RWMutex // read by every query
	m  map[string]*sql.Stmt
}

// maxStmts bounds the cache: queries built with lists of varying length
// are distinct strings; past the bound a query is prepared for the call.
const maxStmts = 512

// get returns db's kept statement for q, preparing it once. ok is false
// when the cache is full and st must be closed after use.
func (c *stmtCache) get(ctx context.Context, db preparer, q string) (st *sql.Stmt, ok bool, err error) {
	c.mu.RLock()
	st = c.m[q]
	c.mu.RUnlock()
	if st != nil {
		return st, true, nil
	}
	st, err = db.PrepareContext(ctx, q)
	if err != nil {
		return nil, false, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if kept := c.m[q]; kept != nil { // prepared meanwhile
		st.Close()
		return kept, true, nil
	}
	if len(c.m) >= maxStmts {
		return st, false, nil
	}
	if c.m == nil {
		c.m = map[string]*sql.Stmt{}
	}
	c.m[q] = st
	return st, true, nil
}

// preparer is a *sql.DB or a *sql.Conn.
type preparer interface {
	PrepareContext(ctx context.Context, query string) (*sql.Stmt, error)
}

func (c *stmtCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range c.m {
		st.Close()
	}
	c.m = nil
}

// queryRow is s.db.QueryRowContext through a kept statement.
func (s *Store) queryRow(ctx context.Context, q string, args ...any) *sql.Row {
	db, reads := s.readPool(ctx)
	st, kept, err := reads.get(ctx, db, q)
	if err != nil || !kept {
		if st != nil {
			st.Close()
		}
		return db.QueryRowContext(ctx, q, args...) // its error, or a one-off
	}
	return st.QueryRowContext(ctx, args...)
}

// query is s.db.QueryContext through a kept statement.
func (s *Store) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	db, reads := s.readPool(ctx)
	st, kept, err := reads.get(ctx, db, q)
	if err != nil {
		return nil, err
	}
	if !kept {
		st.Close()
		return db.QueryContext(ctx, q, args...) // a one-off
	}
	return st.QueryContext(ctx, args...)
}

// txStmt returns a statement for q in write transaction tx, and whether
// it is kept (not to be closed; the others close with tx). On SQLite it
// is the writer connection's kept statement: tx runs on that connection,
// so the statement runs inside tx. (tx.Stmt of it would prepare it again
// each time: database/sql reuses only statements of the pool, and the
// pool's one connection is the transaction's.) On PostgreSQL it is
// prepared in tx.
func (s *Store) txStmt(tx *sql.Tx, q string) (*sql.Stmt, bool, error) {
	if s.wconn != nil {
		st, kept, err := s.wstmts.get(context.Background(), s.wconn, q)
		if err != nil || kept {
			return st, kept, err
		}
		st.Close() // the cache is full
	}
	st, err := tx.Prepare(q)
	return st, false, err
}

// txExec is tx.Exec through txStmt.
func (s *Store) txExec(tx *sql.Tx, q string, args ...any) (sql.Result, error) {
	st, kept, err := s.txStmt(tx, q)
	if err != nil {
		return nil, err
	}
	if !kept {
		defer st.Close()
	}
	return st.Exec(args...)
}
