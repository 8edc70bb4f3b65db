package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// Dialect is the SQL database a store runs on.
type Dialect string

// The dialects.
const (
	SQLite   Dialect = "sqlite"
	Postgres Dialect = "postgres"
)

// IsPostgresURL reports whether a --store value names a PostgreSQL
// database (postgres:// or postgresql://) rather than a SQLite file.
func IsPostgresURL(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

// openPostgres opens a database/sql pool on the PostgreSQL database dsn
// names, through pgx's stdlib driver wrapped so that the store's SQL, written
// with SQLite's ? placeholders, runs unchanged (see pgConn).
func openPostgres(dsn string) (*sql.DB, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("--store %s: %w (give postgres://user:password@host:5432/db?sslmode=disable)", redactDSN(dsn), err)
	}
	return sql.OpenDB(pgConnector{stdlib.GetConnector(*cfg)}), nil
}

// redactDSN hides a DSN's password for error messages and logs.
func redactDSN(dsn string) string {
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil || cfg.Password == "" {
		return dsn
	}
	return strings.Replace(dsn, ":"+cfg.Password+"@", ":***@", 1)
}

type pgConnector struct{ driver.Connector }

func (c pgConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &pgConn{conn.(*stdlib.Conn)}, nil
}

// pgConn is pgx's database/sql connection with the store's SQL translated
// on the way in: ? placeholders become $1..$n, and bools (SQLite's 0/1
// INTEGER columns, BIGINT on PostgreSQL) become 0/1.
type pgConn struct{ *stdlib.Conn }

// Prepare returns a statement that runs its query through the
// connection's pgx statement cache (prepared on the server the first time
// the connection runs it, then one round trip a run), not a statement of
// its own: pgx's Prepare and Close are a round trip each, and the store
// prepares a transaction's statements in every write transaction
// (JobTx.stmt), which on PostgreSQL cost more than running them.
func (c *pgConn) Prepare(query string) (driver.Stmt, error) {
	return &pgStmt{c: c, q: rebind(query)}, nil
}

func (c *pgConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	return c.Prepare(query)
}

// pgStmt is a "prepared" statement of pgConn: its query, run through the
// connection's statement cache.
type pgStmt struct {
	c *pgConn
	q string
}

func (s *pgStmt) Close() error  { return nil }
func (s *pgStmt) NumInput() int { return -1 }

func (s *pgStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	return s.c.Conn.ExecContext(ctx, s.q, args)
}

func (s *pgStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	return s.c.Conn.QueryContext(ctx, s.q, args)
}

func (s *pgStmt) Exec(args []driver.Value) (driver.Result, error) {
	return s.ExecContext(context.Background(), named(args))
}

func (s *pgStmt) Query(args []driver.Value) (driver.Rows, error) {
	return s.QueryContext(context.Background(), named(args))
}

func named(args []driver.Value) []driver.NamedValue {
	out := make([]driver.NamedValue, len(args))
	for i, v := range args {
		out[i] = driver.NamedValue{Ordinal: i + 1, Value: v}
	}
	return out
}

func (c *pgConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	return c.Conn.ExecContext(ctx, rebind(query), args)
}

func (c *pgConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	return c.Conn.QueryContext(ctx, rebind(query), args)
}

func (c *pgConn) CheckNamedValue(v *driver.NamedValue) error {
	if b, ok := v.Value.(bool); ok {
		v.Value = int64(0)
		if b {
			v.Value = int64(1)
		}
	}
	return nil
}

// rebind turns ? placeholders into PostgreSQL's $1..$n, leaving question
// marks in string literals, quoted identifiers and comments alone.
func rebind(q string) string {
	if !strings.Contains(q, "?") {
		return q
	}
	var b strings.Builder
	b.Grow(len(q) + 16)
	n := 0
	for i := 0; i < len(q); i++ {
		c := q[i]
		switch {
		case c == '\'' || c == '"':
			j := i + 1
			for j < len(q) {
				if q[j] == c {
					if j+1 < len(q) && q[j+1] == c { // doubled quote
						j += 2
						continue
					}
					break
				}
				j++
			}
			if j >= len(q) {
				j = len(q) - 1
			}
			b.WriteString(q[i : j+1])
			i = j
		case c == '-' && i+1 < len(q) && q[i+1] == '-':
			j := strings.IndexByte(q[i:], '\n')
			if j < 0 {
				j = len(q) - i - 1
			}
			b.WriteString(q[i : i+j+1])
			i += j
		case c == '?':
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// retryable reports whether a PostgreSQL transaction failed only because it
// met another (serialization failure, deadlock) and may simply run again.
func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}

// isUniqueViolation reports whether err is a UNIQUE or PRIMARY KEY
// violation, on either database.
func isUniqueViolation(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "23505"
	}
	return err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed")
}

// writeLock is the transaction-level advisory lock every PostgreSQL write
// transaction takes first (keyed by the store's schema, so stores in other
// schemas of one database do not wait on each other). It makes writes run
// one at a time, as SQLite's single writer does: every read-then-write in
// the store (a site has no open job, the next TUF metadata version, an
// enroll token's uses left, a rollout's next wave) is race-free across
// connections and across server replicas without a lock of its own. Reads
// take no lock.
const writeLock = `SELECT pg_advisory_xact_lock(1685221228, hashtext(current_schema()))`

// initLock is the session-level advisory lock a starting server holds
// while it initialises what replicas share (LockInit).
const (
	initLock   = `SELECT pg_advisory_lock(1685221229, hashtext(current_schema()))`
	initUnlock = `SELECT pg_advisory_unlock(1685221229, hashtext(current_schema()))`
)

// LockInit waits until no other server initialises the store, and holds
// it until release is called: the first of several replicas started
// together on an empty store creates its TUF repository, keys and admin
// token, and the others find them made. On SQLite it holds nothing: the
// data directory's lock already keeps a second server out.
func (s *Store) LockInit(ctx context.Context) (release func(), err error) {
	if s.dialect != Postgres {
		return func() {}, nil
	}
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("wait for another server initialising the store: %w", err)
	}
	if _, err := conn.ExecContext(ctx, initLock); err != nil {
		conn.Close()
		return nil, fmt.Errorf("wait for another server initialising the store: %w", err)
	}
	return func() {
		if _, err := conn.ExecContext(context.WithoutCancel(ctx), initUnlock); err != nil {
			// The session may still hold the lock: close it rather
			// than return it to the pool.
			conn.Raw(func(any) error { return driver.ErrBadConn })
		}
		conn.Close()
	}, nil
}

// maxTxAttempts bounds how often a group of write transactions that
// failed only because it met another (PostgreSQL: 40001, 40P01) runs again.
const maxTxAttempts = 10

// migratePostgres creates the schema in an empty database (postgresSchema)
// and migrates an older one forward (postgresMigrations), all in one
// transaction under the write lock, so replicas starting together migrate
// once. The version is the one row of schema_version.
func (s *Store) migratePostgres(ctx context.Context) error {
	if want := postgresBase + len(postgresMigrations); want != len(migrations) {
		return fmt.Errorf("this server has %d schema migrations for SQLite but PostgreSQL twins up to version %d only: append the missing ones to postgresMigrations", len(migrations), want)
	}
	return s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.Exec(`CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)`); err != nil {
			return fmt.Errorf("read schema version: %w", err)
		}
		v := 0
		err := tx.QueryRow(`SELECT version FROM schema_version`).Scan(&v)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("read schema version: %w", err)
		}
		if v > len(migrations) {
			return fmt.Errorf("schema version %d is newer than this server knows (%d): run a newer updateserver", v, len(migrations))
		}
		if v == len(migrations) {
			return nil
		}
		if v == 0 {
			if _, err := tx.Exec(postgresSchema); err != nil {
				return fmt.Errorf("create schema version %d: %w", postgresBase, err)
			}
			v = postgresBase
		}
		for ; v < len(migrations); v++ {
			if _, err := tx.Exec(postgresMigrations[v-postgresBase]); err != nil {
				return fmt.Errorf("migrate schema to version %d: %w", v+1, err)
			}
		}
		if _, err := tx.Exec(`DELETE FROM schema_version`); err != nil {
			return err
		}
		_, err = tx.Exec(`INSERT INTO schema_version (version) VALUES (?)`, v)
		return err
	})
}
