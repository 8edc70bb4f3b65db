package migrate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
)

type postgresDialect struct {
	dsn      string
	database string // current_database()
	schemaNm string // current_schema(): where the record table lives
}

func newPostgres(dsn string) (dialect, error) {
	if dsn == "" {
		return nil, errorf(ErrUnsupported, "database.dsn is empty; give a PostgreSQL URL such as postgres://user:pass@host:5432/db")
	}
	return &postgresDialect{dsn: dsn}, nil
}

func (d *postgresDialect) name() string   { return "postgres" }
func (d *postgresDialect) target() string { return d.database + "/" + d.schemaNm }

func (d *postgresDialect) open(ctx context.Context) (*sql.DB, error) {
	pool, err := sql.Open("pgx", d.dsn)
	if err != nil {
		return nil, errorf(ErrUnsupported, "database.dsn: %w", err)
	}
	var schema sql.NullString
	err = pool.QueryRowContext(ctx, "SELECT current_database(), current_schema()").Scan(&d.database, &schema)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to the PostgreSQL database: %w", err)
	}
	if !schema.Valid {
		pool.Close()
		return nil, fmt.Errorf("PostgreSQL database %s: no schema of the search_path exists; create it or fix search_path", d.database)
	}
	d.schemaNm = schema.String
	return pool, nil
}

func (d *postgresDialect) exists() (bool, error) { return true, nil }

func (d *postgresDialect) table() string {
	return quoteIdent(d.schemaNm) + "." + quoteIdent(TableName)
}

func (d *postgresDialect) createTable() string {
	return `CREATE TABLE IF NOT EXISTS ` + d.table() + ` (
	id bigint PRIMARY KEY,
	name text NOT NULL,
	checksum text NOT NULL,
	applied_at timestamptz NOT NULL,
	release text NOT NULL,
	down_sql text
)`
}

func (d *postgresDialect) tableExists(ctx context.Context, q querier) (bool, error) {
	var ok bool
	err := q.QueryRowContext(ctx, "SELECT to_regclass($1) IS NOT NULL", d.table()).Scan(&ok)
	return ok, err
}

func (d *postgresDialect) arg(i int) string        { return "$" + strconv.Itoa(i) }
func (d *postgresDialect) timeArg(t time.Time) any { return t }

// lock takes a transaction-scoped advisory lock keyed by the record
// table, so two runners never migrate the same schema at once.
func (d *postgresDialect) lock(ctx context.Context, tx *sql.Tx) error {
	h := fnv.New64a()
	_, _ = io.WriteString(h, "dropless-migrate:"+d.database+"."+d.schemaNm)
	_, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", int64(h.Sum64()))
	return err
}

func (d *postgresDialect) txID(ctx context.Context, tx *sql.Tx) (string, error) {
	var id string
	err := tx.QueryRowContext(ctx, "SELECT txid_current()::text").Scan(&id)
	return id, err
}

// position maps a PostgreSQL error's character position in query to a
// line and column.
func (d *postgresDialect) position(err error, query string) (int, int) {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Position <= 0 {
		return 0, 0
	}
	line, col, n := 1, 1, int(pe.Position)
	for _, r := range query {
		if n--; n == 0 {
			break
		}
		if r == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
	}
	return line, col
}

// pgUser restricts a query on pg_namespace n to the user's schemas.
const pgUser = `n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'`

// pgSchemaQueries describe the user schemas, one line per object.
// Sequence positions and grants are left out: a rollback does not
// restore them (sequences are not transactional).
var pgSchemaQueries = []string{
	`SELECT format('schema %I', n.nspname) FROM pg_namespace n WHERE ` + pgUser,
	`SELECT format('ext %I %s in %I', e.extname, e.extversion, n.nspname) FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace`,
	`SELECT format('rel %I.%I kind=%s persistence=%s partition=%s', n.nspname, c.relname, c.relkind, c.relpersistence,
		coalesce(pg_get_expr(c.relpartbound, c.oid), ''))
		|| CASE WHEN c.relkind IN ('v', 'm') THEN ' view=' || pg_get_viewdef(c.oid) ELSE '' END
	 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
	 WHERE ` + pgUser + ` AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c')`,
	`SELECT format('col %I.%I.%I %s notnull=%s default=%s identity=%s generated=%s collation=%s',
		n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
		coalesce(pg_get_expr(ad.adbin, ad.adrelid), ''), a.attidentity, a.attgenerated, coalesce(co.collname, ''))
	 FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
	 LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
	 LEFT JOIN pg_collation co ON co.oid = a.attcollation AND a.attcollation <> 0
	 WHERE ` + pgUser + ` AND a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'c')`,
	`SELECT format('con %I.%I %I %s', n.nspname, coalesce(c.relname, t.typname, ''), k.conname, pg_get_constraintdef(k.oid))
	 FROM pg_constraint k JOIN pg_namespace n ON n.oid = k.connamespace
	 LEFT JOIN pg_class c ON c.oid = k.conrelid LEFT JOIN pg_type t ON t.oid = k.contypid
	 WHERE ` + pgUser,
	`SELECT 'index ' || indexdef FROM pg_indexes n WHERE n.schemaname !~ '^pg_' AND n.schemaname <> 'information_schema'`,
	`SELECT 'trigger ' || pg_get_triggerdef(t.oid) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
	 JOIN pg_namespace n ON n.oid = c.relnamespace WHERE ` + pgUser + ` AND NOT t.tgisinternal`,
	`SELECT CASE WHEN p.prokind IN ('f', 'p') THEN 'function ' || pg_get_functiondef(p.oid)
		ELSE format('function %I.%I(%s) kind=%s', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid), p.prokind) END
	 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE ` + pgUser,
	`SELECT format('enum %I.%I %s', n.nspname, t.typname, string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder))
	 FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace JOIN pg_enum e ON e.enumtypid = t.oid
	 WHERE ` + pgUser + ` GROUP BY n.nspname, t.typname`,
	`SELECT format('domain %I.%I %s notnull=%s default=%s', n.nspname, t.typname, format_type(t.typbasetype, t.typtypmod), t.typnotnull, coalesce(t.typdefault, ''))
	 FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE ` + pgUser + ` AND t.typtype = 'd'`,
	`SELECT format('sequence %I.%I %s start=%s increment=%s min=%s max=%s cycle=%s', n.nspname, c.relname,
		format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement, s.seqmin, s.seqmax, s.seqcycle)
	 FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE ` + pgUser,
}

func (d *postgresDialect) schema(ctx context.Context, q querier) ([]string, error) {
	var lines []string
	for _, query := range pgSchemaQueries {
		l, err := queryStrings(ctx, q, query)
		if err != nil {
			return nil, err
		}
		lines = append(lines, l...)
	}
	slices.Sort(lines)
	return lines, nil
}

// rows writes every row of every user table as its text representation,
// sorted bytewise by the server.
func (d *postgresDialect) rows(ctx context.Context, q querier, w io.Writer) error {
	tables, err := queryStrings(ctx, q, `SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace WHERE `+pgUser+` AND c.relkind = 'r' ORDER BY 1`)
	if err != nil {
		return err
	}
	for _, t := range tables {
		writeField(w, "table "+t)
		query := `SELECT x FROM (SELECT t::text AS x FROM ONLY ` + t + ` t) s ORDER BY x COLLATE "C"`
		if err := writeRows(ctx, q, query, w); err != nil {
			return fmt.Errorf("table %s: %w", t, err)
		}
	}
	return nil
}
