package migrate

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
)

// Object is one object of the client database's schema, as ReadSchema
// finds it, for the agent's schema drift (a SQL script run by hand): a
// table, a column, an index, a view, a trigger, a constraint, a sequence,
// a function or a type.
type Object struct {
	// Kind is "table", "column", "index", "view", "trigger",
	// "constraint", "sequence", "function" or "type".
	Kind string `json:"kind"`
	// Name names the object as a person would: "customers",
	// "customers.hotfix_flag" for a column or a constraint, "hotfix_idx";
	// on PostgreSQL an object outside the connection's current schema is
	// qualified ("audit.events").
	Name string `json:"name"`
	// Table is the table (or view) the object belongs to: a column, an
	// index, a trigger or a constraint; "" for the others.
	Table string `json:"table,omitempty"`
	// Def is the object's definition, normalised (NormalizeSQL) so that
	// what the database reformats does not count as a change.
	Def string `json:"def"`
}

// Key identifies an object within a schema.
func (o Object) Key() string { return o.Kind + " " + o.Name }

// ReadSchema returns the objects of the schema of the database of driver
// and dsn (as Open takes them), sorted by Key, without the agent's own
// record table (TableName) and what belongs to it: on SQLite every object
// of sqlite_schema but SQLite's own; on PostgreSQL those of the schemas on
// the connection's search_path (the schemas the app uses), without what
// extensions own.
//
// Like ReadRecords it only reads, while the app runs: a SQLite file is
// opened read-only; a SQLite file that does not exist has no objects.
func ReadSchema(ctx context.Context, driver, dsn string) ([]Object, error) {
	d, pool, err := openForReading(ctx, driver, dsn)
	if err != nil || pool == nil {
		return nil, err
	}
	defer pool.Close()
	var objs []Object
	switch d := d.(type) {
	case *sqliteDialect:
		objs, err = sqliteObjects(ctx, pool)
	case *postgresDialect:
		objs, err = postgresObjects(ctx, pool)
	default:
		err = errorf(ErrUnsupported, "reading the schema of a %s database is not supported", d.name())
	}
	if err != nil {
		return nil, fmt.Errorf("read the schema: %w", err)
	}
	objs = slices.DeleteFunc(objs, func(o Object) bool { return o.Name == TableName || o.Table == TableName })
	for i := range objs {
		objs[i].Def = NormalizeSQL(objs[i].Def)
	}
	slices.SortFunc(objs, func(a, b Object) int { return strings.Compare(a.Key(), b.Key()) })
	return objs, nil
}

// openForReading opens the database of driver and dsn to read it while
// the app runs (SQLite: read-only); a nil pool when a SQLite file does
// not exist.
func openForReading(ctx context.Context, driver, dsn string) (dialect, *sql.DB, error) {
	d, err := newDialect(driver, dsn)
	if err != nil {
		return nil, nil, err
	}
	var pool *sql.DB
	if ro, ok := d.(readOnlyOpener); ok {
		if exists, err := d.exists(); err != nil || !exists {
			return d, nil, err
		}
		pool, err = ro.openReadOnly()
	} else {
		pool, err = d.open(ctx)
	}
	return d, pool, err
}

// sqliteObjects reads sqlite_schema (SQLite's own objects and automatic
// indexes left out) and the columns of every table.
func sqliteObjects(ctx context.Context, q querier) ([]Object, error) {
	rows, err := q.QueryContext(ctx, `SELECT type, name, tbl_name, coalesce(sql, '') FROM main.sqlite_schema
		WHERE name NOT LIKE 'sqlite\_%' ESCAPE '\' ORDER BY name`)
	if err != nil {
		return nil, err
	}
	var objs []Object
	tables := 0
	for rows.Next() {
		var o Object
		if err := rows.Scan(&o.Kind, &o.Name, &o.Table, &o.Def); err != nil {
			rows.Close()
			return nil, err
		}
		switch o.Kind {
		case "table":
			tables++
			o.Table = ""
		case "view":
			o.Table = ""
		}
		objs = append(objs, o)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if tables == 0 {
		return objs, nil
	}
	// One query for the columns of every table.
	cols, err := queryStrings(ctx, q, `SELECT m.name || char(0) || p.name || char(0) || p.type || ' notnull=' || p."notnull" || ' default=' || coalesce(p.dflt_value, '') || ' pk=' || p.pk || ' hidden=' || p.hidden
		FROM main.sqlite_schema m JOIN pragma_table_xinfo(m.name) p
		WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite\_%' ESCAPE '\' ORDER BY m.name, p.cid`)
	if err != nil {
		return nil, fmt.Errorf("columns: %w", err)
	}
	for _, c := range cols {
		parts := strings.SplitN(c, "\x00", 3)
		if len(parts) != 3 {
			return nil, fmt.Errorf("columns: unexpected row %q", c)
		}
		objs = append(objs, Object{Kind: "column", Name: parts[0] + "." + parts[1], Table: parts[0], Def: parts[2]})
	}
	return objs, nil
}

// pgName is the SQL naming an object of namespace n: its name alone in
// the current schema, qualified in another.
func pgName(name string) string {
	return `CASE WHEN n.nspname = current_schema() THEN ` + name + ` ELSE n.nspname || '.' || ` + name + ` END`
}

// pgApp restricts a query on pg_namespace n to the schemas on the search
// path; pgNotExt leaves out what an extension owns (class: the catalog of
// the object o).
const pgApp = `n.nspname = ANY (current_schemas(false))`

func pgNotExt(class, oid string) string {
	return `NOT EXISTS (SELECT 1 FROM pg_depend dep WHERE dep.classid = '` + class + `'::regclass AND dep.objid = ` + oid + ` AND dep.deptype = 'e')`
}

// pgObjectQueries read the objects: kind, name, table, definition.
var pgObjectQueries = []string{
	`SELECT CASE WHEN c.relkind IN ('v', 'm') THEN 'view' ELSE 'table' END, ` + pgName("c.relname") + `, '',
		CASE WHEN c.relkind IN ('v', 'm') THEN c.relkind::text || ' ' || pg_get_viewdef(c.oid)
		ELSE format('kind=%s persistence=%s partition=%s', c.relkind, c.relpersistence, coalesce(pg_get_expr(c.relpartbound, c.oid), '')) END
	 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
	 WHERE ` + pgApp + ` AND c.relkind IN ('r', 'p', 'f', 'v', 'm') AND ` + pgNotExt("pg_class", "c.oid"),
	`SELECT 'column', ` + pgName("c.relname") + ` || '.' || a.attname, ` + pgName("c.relname") + `,
		format('%s notnull=%s default=%s identity=%s generated=%s collation=%s', format_type(a.atttypid, a.atttypmod), a.attnotnull,
		coalesce(pg_get_expr(ad.adbin, ad.adrelid), ''), a.attidentity, a.attgenerated, coalesce(co.collname, ''))
	 FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
	 LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
	 LEFT JOIN pg_collation co ON co.oid = a.attcollation AND a.attcollation <> 0
	 WHERE ` + pgApp + ` AND a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'f') AND ` + pgNotExt("pg_class", "c.oid"),
	`SELECT 'constraint', ` + pgName("c.relname") + ` || '.' || k.conname, ` + pgName("c.relname") + `, pg_get_constraintdef(k.oid)
	 FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
	 WHERE ` + pgApp + ` AND ` + pgNotExt("pg_class", "c.oid"),
	// Indexes of constraints (primary keys, unique) are their constraints.
	`SELECT 'index', ` + pgName("i.relname") + `, ` + pgName("c.relname") + `, pg_get_indexdef(i.oid)
	 FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class c ON c.oid = x.indrelid
	 JOIN pg_namespace n ON n.oid = i.relnamespace
	 WHERE ` + pgApp + ` AND ` + pgNotExt("pg_class", "c.oid") + `
	 AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.oid AND k.contype IN ('p', 'u', 'x'))`,
	`SELECT 'trigger', t.tgname, ` + pgName("c.relname") + `, pg_get_triggerdef(t.oid)
	 FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
	 WHERE ` + pgApp + ` AND NOT t.tgisinternal`,
	// Sequences a column owns (serial, identity) are its default.
	`SELECT 'sequence', ` + pgName("c.relname") + `, '', format('%s start=%s increment=%s min=%s max=%s cycle=%s',
		format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement, s.seqmin, s.seqmax, s.seqcycle)
	 FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid JOIN pg_namespace n ON n.oid = c.relnamespace
	 WHERE ` + pgApp + ` AND NOT EXISTS (SELECT 1 FROM pg_depend dep WHERE dep.classid = 'pg_class'::regclass
		AND dep.objid = c.oid AND dep.deptype IN ('a', 'i', 'e'))`,
	`SELECT 'function', ` + pgName("p.proname") + ` || '(' || pg_get_function_identity_arguments(p.oid) || ')', '',
		CASE WHEN p.prokind IN ('f', 'p') THEN pg_get_functiondef(p.oid) ELSE 'kind=' || p.prokind::text END
	 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE ` + pgApp + ` AND ` + pgNotExt("pg_proc", "p.oid"),
	`SELECT 'type', ` + pgName("t.typname") + `, '',
		CASE t.typtype WHEN 'e' THEN 'enum ' || (SELECT string_agg(quote_literal(e.enumlabel), ',' ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid)
		ELSE format('domain %s notnull=%s default=%s', format_type(t.typbasetype, t.typtypmod), t.typnotnull, coalesce(t.typdefault, '')) END
	 FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
	 WHERE ` + pgApp + ` AND t.typtype IN ('e', 'd') AND ` + pgNotExt("pg_type", "t.oid"),
}

func postgresObjects(ctx context.Context, q querier) ([]Object, error) {
	var objs []Object
	for _, query := range pgObjectQueries {
		rows, err := q.QueryContext(ctx, query)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var o Object
			if err := rows.Scan(&o.Kind, &o.Name, &o.Table, &o.Def); err != nil {
				rows.Close()
				return nil, err
			}
			objs = append(objs, o)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return objs, nil
}
