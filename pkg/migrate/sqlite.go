package migrate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" driver

	"github.com/dropless/dropless/pkg/atomicfile"
)

// sqliteBusyTimeout is how long a statement waits for a lock another
// connection holds (the app should be stopped, but Plan runs while it
// runs).
const sqliteBusyTimeout = 10 * time.Second

// sqliteCopy is the name of the database copy in a backup directory.
const sqliteCopy = "db.sqlite"

type sqliteDialect struct {
	path string // absolute path of the database file
	dsn  string // as opened: the configured DSN plus our parameters
}

func newSQLite(dsn string) (dialect, error) {
	p, err := sqlitePath(dsn)
	if err != nil {
		return nil, err
	}
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	if !strings.Contains(dsn, "busy_timeout") && !strings.Contains(dsn, "_timeout=") {
		dsn += sep + fmt.Sprintf("_pragma=busy_timeout(%d)", sqliteBusyTimeout.Milliseconds())
		sep = "&"
	}
	if !strings.Contains(dsn, "_txlock=") {
		// Migrations write: take the write lock at BEGIN rather than fail
		// with SQLITE_BUSY halfway.
		dsn += sep + "_txlock=immediate"
	}
	return &sqliteDialect{path: p, dsn: dsn}, nil
}

// sqlitePath returns the absolute file path of a modernc.org/sqlite DSN: a
// path, optionally followed by ?parameters, or a file: URI.
func sqlitePath(dsn string) (string, error) {
	p := dsn
	if strings.HasPrefix(dsn, "file:") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", errorf(ErrUnsupported, "database.dsn %q: %w", dsn, err)
		}
		if u.Query().Get("mode") == "memory" {
			return "", errorf(ErrUnsupported, "database.dsn %q: an in-memory database cannot be migrated by the agent; give the database file's path", dsn)
		}
		p = u.Path
		if p == "" {
			p = u.Opaque
		}
		if len(p) >= 3 && p[0] == '/' && p[2] == ':' { // file:///C:/app.db
			p = p[1:]
		}
	} else if i := strings.IndexByte(p, '?'); i >= 0 {
		p = p[:i]
	}
	if p == "" || p == ":memory:" {
		return "", errorf(ErrUnsupported, "database.dsn %q: not a database file; give the database file's path", dsn)
	}
	abs, err := filepath.Abs(filepath.FromSlash(p))
	if err != nil {
		return "", err
	}
	return abs, nil
}

// sqliteURI returns a file: URI for path with query (e.g. "mode=ro"),
// which modernc.org/sqlite passes to SQLite as a URI filename.
func sqliteURI(path, query string) string {
	p := filepath.ToSlash(path)
	if !strings.HasPrefix(p, "/") {
		p = "/" + p // C:/x -> /C:/x
	}
	u := url.URL{Scheme: "file", Path: p, RawQuery: query}
	return u.String()
}

func (d *sqliteDialect) name() string   { return "sqlite" }
func (d *sqliteDialect) target() string { return d.path }
func (d *sqliteDialect) table() string  { return `"` + TableName + `"` }
func (d *sqliteDialect) arg(int) string { return "?" }

func (d *sqliteDialect) timeArg(t time.Time) any { return t.UTC().Format(time.RFC3339Nano) }

func (d *sqliteDialect) createTable() string {
	return `CREATE TABLE IF NOT EXISTS ` + d.table() + ` (
	id INTEGER PRIMARY KEY,
	name TEXT NOT NULL,
	checksum TEXT NOT NULL,
	applied_at TEXT NOT NULL,
	release TEXT NOT NULL,
	down_sql TEXT
)`
}

// open opens a pool of one connection: the runner's transactions, VACUUM
// INTO and the restore all run on it, never waiting on each other.
func (d *sqliteDialect) open(ctx context.Context) (*sql.DB, error) {
	exists, err := d.exists()
	if err != nil {
		return nil, err
	}
	if !exists {
		// Not pinged: that would create the file. Its directory may be
		// missing too (a first install of an app that creates it): Up
		// creates it, and a rollback removes it again. What exists of
		// the path must be directories.
		if _, err := d.missingDirs(); err != nil {
			return nil, err
		}
	}
	pool, err := sql.Open("sqlite", d.dsn)
	if err != nil {
		return nil, err
	}
	pool.SetMaxOpenConns(1)
	if exists {
		var n int
		if err := pool.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema").Scan(&n); err != nil {
			pool.Close()
			return nil, fmt.Errorf("open database %s: %w", d.path, err)
		}
	}
	return pool, nil
}

func (d *sqliteDialect) exists() (bool, error) {
	fi, err := os.Stat(d.path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if !fi.Mode().IsRegular() {
		return false, fmt.Errorf("database %s is not a regular file", d.path)
	}
	return true, nil
}

func (d *sqliteDialect) tableExists(ctx context.Context, q querier) (bool, error) {
	var n int
	err := q.QueryRowContext(ctx, "SELECT count(*) FROM main.sqlite_schema WHERE type = 'table' AND name = ?", TableName).Scan(&n)
	return n > 0, err
}

// lock does nothing: transactions begin IMMEDIATE, which takes the
// database's write lock.
func (d *sqliteDialect) lock(context.Context, *sql.Tx) error { return nil }

// txID: SQLite has no transaction ID; a migration that commits makes the
// runner's COMMIT fail instead.
func (d *sqliteDialect) txID(context.Context, *sql.Tx) (string, error) { return "", nil }

func (d *sqliteDialect) position(error, string) (int, int) { return 0, 0 }

func (d *sqliteDialect) schema(ctx context.Context, q querier) ([]string, error) {
	return sqliteSchema(ctx, q)
}

func (d *sqliteDialect) rows(ctx context.Context, q querier, w io.Writer) error {
	return sqliteRows(ctx, q, w)
}

// sqliteSchema describes the schema: sqlite_schema (without root pages,
// which VACUUM changes), user_version and application_id.
func sqliteSchema(ctx context.Context, q querier) ([]string, error) {
	lines, err := queryStrings(ctx, q, `SELECT type || ' ' || name || ' ON ' || tbl_name || ': ' || coalesce(sql, '') FROM main.sqlite_schema ORDER BY 1`)
	if err != nil {
		return nil, err
	}
	for _, p := range []string{"user_version", "application_id"} {
		var v int64
		if err := q.QueryRowContext(ctx, "PRAGMA main."+p).Scan(&v); err != nil {
			return nil, err
		}
		lines = append(lines, fmt.Sprintf("pragma %s=%d", p, v))
	}
	return lines, nil
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// sqliteRows writes every row of every table (shadow tables of virtual
// tables included; virtual tables themselves hold nothing of their own),
// with its rowid where it has one, in rowid or primary key order. Values
// are written with quote(), which is exact for every type.
func sqliteRows(ctx context.Context, q querier, w io.Writer) error {
	type table struct {
		name         string
		withoutRowid bool
	}
	var tables []table
	rows, err := q.QueryContext(ctx, `SELECT name, wr FROM pragma_table_list WHERE schema = 'main' AND type IN ('table', 'shadow') AND name NOT IN ('sqlite_schema', 'sqlite_master') ORDER BY name`)
	if err != nil {
		return err
	}
	for rows.Next() {
		var t table
		if err := rows.Scan(&t.name, &t.withoutRowid); err != nil {
			rows.Close()
			return err
		}
		tables = append(tables, t)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, t := range tables {
		var cols, pk []string
		names := map[string]bool{}
		crows, err := q.QueryContext(ctx, `SELECT name, pk FROM pragma_table_info(?) ORDER BY cid`, t.name)
		if err != nil {
			return err
		}
		type col struct {
			name string
			pk   int
		}
		var cs []col
		for crows.Next() {
			var c col
			if err := crows.Scan(&c.name, &c.pk); err != nil {
				crows.Close()
				return err
			}
			cs = append(cs, c)
		}
		crows.Close()
		if err := crows.Err(); err != nil {
			return err
		}
		pks := make([]string, len(cs)+1)
		for _, c := range cs {
			cols = append(cols, "quote("+quoteIdent(c.name)+")")
			names[strings.ToLower(c.name)] = true
			if c.pk > 0 && c.pk < len(pks) {
				pks[c.pk] = quoteIdent(c.name)
			}
		}
		for _, p := range pks {
			if p != "" {
				pk = append(pk, p)
			}
		}
		order := strings.Join(cols, ", ") // without a usable rowid: by content
		if !t.withoutRowid {
			for _, alias := range []string{"rowid", "_rowid_", "oid"} {
				if !names[alias] {
					cols = append([]string{alias}, cols...)
					order = alias
					break
				}
			}
		} else if len(pk) > 0 {
			order = strings.Join(pk, ", ")
		}
		writeField(w, "table "+t.name)
		if len(cols) == 0 {
			continue
		}
		query := "SELECT " + strings.Join(cols, " || ',' || ") + " FROM main." + quoteIdent(t.name) + " ORDER BY " + order
		if err := writeRows(ctx, q, query, w); err != nil {
			return fmt.Errorf("table %s: %w", t.name, err)
		}
	}
	return nil
}

// writeRows writes the single text column of each row of query to w.
func writeRows(ctx context.Context, q querier, query string, w io.Writer) error {
	rows, err := q.QueryContext(ctx, query)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var s sql.NullString
		if err := rows.Scan(&s); err != nil {
			return err
		}
		writeField(w, s.String)
	}
	return rows.Err()
}

// removeDatabase removes the database file and its companions: the
// database did not exist before the job.
// missingDirs lists the directories of the database's path that do not
// exist, outermost first; an existing one that is not a directory is an
// error.
func (d *sqliteDialect) missingDirs() ([]string, error) {
	var missing []string
	for dir := filepath.Dir(d.path); ; dir = filepath.Dir(dir) {
		fi, err := os.Stat(dir)
		if err == nil {
			if !fi.IsDir() {
				return nil, fmt.Errorf("database %s: %s is not a directory; check database.dsn", d.path, dir)
			}
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("database %s: %w", d.path, err)
		}
		missing = append([]string{dir}, missing...)
		if dir == filepath.Dir(dir) {
			break
		}
	}
	return missing, nil
}

// prepareUp creates the database's directory when it is missing (the
// backup noted which directories did not exist; a rollback removes them).
func (d *sqliteDialect) prepareUp() error {
	dir := filepath.Dir(d.path)
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create the database's directory: %w", err)
	}
	return atomicfile.SyncDir(filepath.Dir(dir))
}

// removeDirs removes the directories the database's path lacked before
// the job (innermost first) where they are empty: a directory holding
// anything else is left as it is.
func removeDirs(dirs []string) error {
	for i := len(dirs) - 1; i >= 0; i-- {
		err := os.Remove(dirs[i])
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			if entries, rerr := os.ReadDir(dirs[i]); rerr == nil && len(entries) > 0 {
				return nil // not empty: no longer ours alone
			}
			return fmt.Errorf("remove %s (it did not exist before the job): %w", dirs[i], err)
		}
		if err := atomicfile.SyncDir(filepath.Dir(dirs[i])); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

func (d *sqliteDialect) removeDatabase(db *DB) error {
	err := d.swap(db, func() error {
		if err := os.Remove(d.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return atomicfile.SyncDir(filepath.Dir(d.path))
	})
	if err != nil {
		return fmt.Errorf("remove %s (it did not exist before the job): %w", d.path, err)
	}
	if ok, err := d.exists(); err != nil || ok {
		return errorf(ErrVerify, "database %s still exists after the rollback removed it", d.path)
	}
	return nil
}

// swap closes the runner's pool and, when replace is not nil, removes
// the database's -wal, -shm and -journal files (which belong to the file
// about to go and would corrupt its successor) and runs replace; then it
// reopens the pool.
func (d *sqliteDialect) swap(db *DB, replace func() error) error {
	err := db.pool.Close()
	if err == nil && replace != nil {
		for _, suffix := range []string{"-wal", "-shm", "-journal"} {
			if e := os.Remove(d.path + suffix); e != nil && !errors.Is(e, fs.ErrNotExist) {
				err = e
				break
			}
		}
	}
	if err == nil && replace != nil {
		err = replace()
	}
	pool, oerr := sql.Open("sqlite", d.dsn)
	if oerr != nil {
		return errors.Join(err, oerr)
	}
	pool.SetMaxOpenConns(1)
	db.pool = pool
	return err
}
