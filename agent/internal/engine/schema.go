package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/dropless/dropless/agent/internal/config"
	"github.com/dropless/dropless/agent/internal/drift"
	"github.com/dropless/dropless/pkg/atomicfile"
	"github.com/dropless/dropless/pkg/migrate"
)

// Schema drift (a SQL script run by hand on the client database): after
// every job that ends with the app healthy (committed, rolled back to a
// release that passed its health check) the engine records the schema as
// the app left it, an app that migrates itself at start included: the
// baseline, in data_dir/schema.json, written atomically. Between jobs and
// in preflight the schema is compared with it (drift.Schema). Accepting
// drift records it again. A crash between the health check and the write
// leaves the previous baseline whole: Recover finishes the commit, or
// rolls back again, and writes it then.

// schemaFile is the baseline's file in data_dir.
const schemaFile = "schema.json"

// schemaBaseline is what schemaFile holds.
type schemaBaseline struct {
	// Version is the release that ran when the schema was recorded.
	Version string           `json:"version"`
	Driver  string           `json:"driver"`
	Objects []migrate.Object `json:"objects"`
}

// schemaMode is the [database] schema_drift setting; off without a
// database.
func (e *Engine) schemaMode() drift.SchemaMode {
	if e.cfg.Database == nil {
		return drift.SchemaOff
	}
	switch e.cfg.Database.SchemaDrift {
	case config.SchemaDriftReport:
		return drift.SchemaReport
	case config.SchemaDriftOff:
		return drift.SchemaOff
	}
	return drift.SchemaBlock
}

func (e *Engine) schemaPath() string { return filepath.Join(e.cfg.DataDir, schemaFile) }

// recordSchema records the database's schema as the baseline of release
// v, which runs and is healthy; with v "" (nothing installed) it removes
// the baseline.
func (e *Engine) recordSchema(ctx context.Context, v string) error {
	if e.schemaMode() == drift.SchemaOff {
		return nil
	}
	if v == "" {
		if err := os.Remove(e.schemaPath()); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	objs, err := migrate.ReadSchema(ctx, e.cfg.Database.Driver, e.cfg.Database.DSN)
	if err != nil {
		return fmt.Errorf("record the database's schema: %w", err)
	}
	return e.writeSchema(v, objs)
}

func (e *Engine) writeSchema(v string, objs []migrate.Object) error {
	b, err := json.Marshal(schemaBaseline{Version: v, Driver: e.cfg.Database.Driver, Objects: objs})
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(e.schemaPath(), b, 0o600); err != nil {
		return fmt.Errorf("record the database's schema: %w", err)
	}
	return nil
}

// loadSchema reads the baseline; nil when there is none.
func (e *Engine) loadSchema() (*schemaBaseline, error) {
	data, err := os.ReadFile(e.schemaPath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var b schemaBaseline
	if err := json.Unmarshal(data, &b); err != nil {
		return nil, fmt.Errorf("%s: %w", e.schemaPath(), err)
	}
	return &b, nil
}

// recordSchemaAfterJob records the baseline after a job left release v
// running and healthy; a failure is logged (the next drift check records
// it, and reports nothing meanwhile), never the job's.
func (e *Engine) recordSchemaAfterJob(ctx context.Context, jb *job, v string) {
	if err := e.recordSchema(context.WithoutCancel(ctx), v); err != nil {
		jb.log.Warn("schema drift: the database's schema was not recorded; the next drift check records it", "err", err)
	}
}

// schemaDrift compares the database's schema with the baseline of the
// running release v. Without a baseline of v (a site upgraded from an
// agent that kept none, or a recording that failed) it records one and
// reports nothing.
func (e *Engine) schemaDrift(ctx context.Context, v string) ([]string, error) {
	mode := e.schemaMode()
	if mode == drift.SchemaOff {
		return nil, nil
	}
	base, err := e.loadSchema()
	if err != nil {
		e.log.Warn("schema drift: the recorded schema cannot be read; recording it again", "err", err)
		base = nil
	}
	objs, err := migrate.ReadSchema(ctx, e.cfg.Database.Driver, e.cfg.Database.DSN)
	if err != nil {
		return nil, fmt.Errorf("read the schema: %w", err)
	}
	if base == nil || base.Version != v || base.Driver != e.cfg.Database.Driver {
		e.log.Info("schema drift: no schema recorded for the running release; recording the database's schema as it is now", "version", v)
		return nil, e.writeSchema(v, objs)
	}
	return drift.Schema(base.Objects, objs, e.cfg.DriftIgnore, mode.Prefix()), nil
}
