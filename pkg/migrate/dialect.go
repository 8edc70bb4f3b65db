package migrate

import (
	"context"
	"database/sql"
	"io"
	"time"
)

// TableName is the name of the table, in the client's database, where the
// runner records the migrations it applied: one row per migration with
// id, name, checksum, applied_at, release and down_sql (the down migration
// as applied, NULL when there was none, so that a later downgrade can take
// the migration down even though the older bundle lacks it). On PostgreSQL
// it lives in the connection's current schema.
const TableName = "updateagent_migrations"

// dialect is what the runner needs from one database engine. Adding an
// engine (SQL Server, say) is one file: a type implementing dialect, and
// its constructor in dialects.
//
// A dialect that also implements snapshotter (SQLite) backs up by copying
// the database, runs each migration in its own transaction and rolls back
// by restoring the copy. Any other dialect (PostgreSQL, and SQL Server
// would be one too, its DDL being transactional) runs a job's migrations in
// one transaction and rolls back a committed job with the down migrations
// recorded in the table, newest first, in one transaction.
type dialect interface {
	// name is the driver name of the agent's [database] config.
	name() string
	// open returns a pool for the database. It must not create the
	// database (Plan on a database that does not exist yet creates
	// nothing); it should check that the database is reachable.
	open(ctx context.Context) (*sql.DB, error)
	// target identifies the database (a SQLite file's absolute path;
	// PostgreSQL's database and schema), so that a backup is never used on
	// another database.
	target() string
	// exists reports whether the database exists at all. Only a SQLite
	// file can be missing (a first install); the runner then reads
	// nothing, and Up creates it.
	exists() (bool, error)
	// table is the record table's name, quoted and qualified for SQL.
	table() string
	// createTable is the DDL that creates the record table if it does not
	// exist: id (integer primary key), name, checksum, applied_at, release
	// (not null) and down_sql (null when there is none).
	createTable() string
	// tableExists reports whether the record table exists.
	tableExists(ctx context.Context, q querier) (bool, error)
	// arg returns the placeholder of the i-th (1-based) query argument.
	arg(i int) string
	// timeArg converts applied_at into the value bound for its column.
	timeArg(t time.Time) any
	// lock serializes runners: called first in each transaction that
	// changes the database (PostgreSQL: an advisory transaction lock).
	lock(ctx context.Context, tx *sql.Tx) error
	// txID identifies the current transaction, so that a migration that
	// ends it (a COMMIT in its SQL) is caught; "" when the engine cannot
	// tell.
	txID(ctx context.Context, tx *sql.Tx) (string, error)
	// position returns the 1-based line and column in query that err
	// points at, or 0, 0.
	position(err error, query string) (line, col int)
	// schema describes the schema (user tables, columns, indexes,
	// constraints, views, triggers ...) as sorted lines; equal lines mean
	// an equal schema.
	schema(ctx context.Context, q querier) ([]string, error)
	// rows writes every row of every user table to w, in an order that
	// depends only on the content.
	rows(ctx context.Context, q querier, w io.Writer) error
}

// snapshotter is implemented by dialects that back up by copying the
// database (see dialect).
type snapshotter interface {
	// snapshot copies the database into dir and verifies the copy,
	// filling the snapshot fields of m. The app must be stopped.
	snapshot(ctx context.Context, db *DB, dir string, m *backupMeta) error
	// restore puts the copy back (idempotent) and verifies the result.
	restore(ctx context.Context, db *DB, b *Backup) error
}

// dialects maps a driver name of the agent's [database] config to its
// constructor.
var dialects = map[string]func(dsn string) (dialect, error){
	"sqlite":   newSQLite,
	"postgres": newPostgres,
}

// querier is what *sql.DB, *sql.Conn and *sql.Tx have in common.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// queryStrings runs a query returning one text column and returns its
// values.
func queryStrings(ctx context.Context, q querier, query string, args ...any) ([]string, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s sql.NullString
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s.String)
	}
	return out, rows.Err()
}
