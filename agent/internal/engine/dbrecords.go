package engine

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/dropless/dropless/agent/internal/config"
	"github.com/dropless/dropless/pkg/migrate"
)

// migrationRecord is a row of pkg/migrate's record table, as drift needs
// it.
type migrationRecord struct {
	id             int
	name, checksum string
}

// readMigrationRecords reads pkg/migrate's record table (migrate.TableName:
// id, name, checksum, applied_at, release, down_sql), read-only, without
// creating anything: a SQLite file that does not exist, or a database
// without the table, has no records. Drift needs every record, including
// those Plan refuses to plan around (drift, migrations without a down
// migration), which Plan reports only as an error.
//
// TODO: use a migrate.DB method returning the records once pkg/migrate
// has one.
func readMigrationRecords(ctx context.Context, dbCfg *config.Database) ([]migrationRecord, error) {
	var (
		db    *sql.DB
		table string
		err   error
	)
	switch dbCfg.Driver {
	case "sqlite":
		p, perr := sqliteFile(dbCfg.DSN)
		if perr != nil {
			return nil, perr
		}
		if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		u := url.URL{Scheme: "file", Path: filepath.ToSlash(p), RawQuery: "mode=ro&_pragma=busy_timeout(10000)"}
		if !strings.HasPrefix(u.Path, "/") {
			u.Path = "/" + u.Path // C:/x
		}
		if db, err = sql.Open("sqlite", u.String()); err != nil {
			return nil, err
		}
		defer db.Close()
		var n int
		if err := db.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?", migrate.TableName).Scan(&n); err != nil {
			return nil, fmt.Errorf("read %s: %w", migrate.TableName, err)
		}
		if n == 0 {
			return nil, nil
		}
		table = `"` + migrate.TableName + `"`
	case "postgres":
		if db, err = sql.Open("pgx", dbCfg.DSN); err != nil {
			return nil, err
		}
		defer db.Close()
		var schema sql.NullString
		var exists bool
		err := db.QueryRowContext(ctx, "SELECT current_schema(), to_regclass(format('%I.%I', current_schema(), $1::text)) IS NOT NULL", migrate.TableName).Scan(&schema, &exists)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", migrate.TableName, err)
		}
		if !schema.Valid || !exists {
			return nil, nil
		}
		table = `"` + strings.ReplaceAll(schema.String, `"`, `""`) + `"."` + migrate.TableName + `"`
	default:
		return nil, fmt.Errorf("database driver %q is not supported", dbCfg.Driver)
	}
	rows, err := db.QueryContext(ctx, "SELECT id, name, checksum FROM "+table+" ORDER BY id")
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", migrate.TableName, err)
	}
	defer rows.Close()
	var recs []migrationRecord
	for rows.Next() {
		var r migrationRecord
		var id int64
		if err := rows.Scan(&id, &r.name, &r.checksum); err != nil {
			return nil, fmt.Errorf("read %s: %w", migrate.TableName, err)
		}
		r.id = int(id)
		recs = append(recs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", migrate.TableName, err)
	}
	return recs, nil
}

// sqliteFile returns the database file of a modernc.org/sqlite DSN (a
// path with optional ?parameters, or a file: URI), as pkg/migrate reads it.
func sqliteFile(dsn string) (string, error) {
	p := dsn
	if strings.HasPrefix(dsn, "file:") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", fmt.Errorf("database.dsn %q: %w", dsn, err)
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
		return "", fmt.Errorf("database.dsn %q: not a database file", dsn)
	}
	return filepath.Abs(filepath.FromSlash(p))
}
