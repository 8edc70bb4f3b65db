package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/dropless/dropless/agent/internal/config"
	"github.com/dropless/dropless/agent/internal/drift"
	"github.com/dropless/dropless/pkg/migrate"
)

// The engine's side of drift (what it is and how it is found:
// agent/internal/drift): it measures the running release against the
// record the agent keeps of its bundle (relmeta.go) and the database's
// migration records against the release's migrations, and its schema
// against the one recorded after the last job (schema.go), adds where current
// points when that is not the installed release
//
//	current: points at releases/1.0.0, not at the installed releases/1.1.0
//
// and records the result in the journal for `updateagent status`.

// DriftInterval is how often the runner calls CheckDrift between jobs.
const DriftInterval = 5 * time.Minute

// driftCache remembers the files of one release found intact. Used by
// one goroutine at a time (runMu).
type driftCache struct {
	version string
	stamps  drift.Stamps
	noMeta  bool // the missing record was logged
}

// migrationDrift compares the database's migration records with the
// migrations of release v (its record in the data dir).
func migrationDrift(ctx context.Context, dbCfg *config.Database, dataDir, v string) ([]string, error) {
	ms, err := migrate.Load(metaMigrationsDir(dataDir, v))
	if err != nil {
		return nil, err
	}
	recs, err := migrate.ReadRecords(ctx, dbCfg.Driver, dbCfg.DSN)
	if err != nil {
		return nil, err
	}
	return drift.Migrations(v, ms, recs), nil
}

// siteDrift computes the drift of the running release v: its files (with
// cache, nil to hash every file) and, when the agent has a database,
// its migration records. A release the agent has no record of has no
// known drift (errNoMeta).
func (e *Engine) siteDrift(ctx context.Context, v string, cache drift.Stamps) ([]string, error) {
	m, err := loadReleaseMeta(e.cfg.DataDir, v)
	if err != nil {
		return nil, err
	}
	var d []string
	if link, ok, err := readCurrent(e.cfg.InstallDir); err == nil && ok && link != releaseLink(v) {
		d = append(d, fmt.Sprintf("current: points at %s, not at the installed releases/%s", link, v))
	} else if err != nil {
		d = append(d, "current: "+err.Error())
	}
	files, err := drift.Files(releaseDir(e.cfg.InstallDir, v), m.Files, e.cfg.DriftIgnore, cache)
	if err != nil {
		return nil, fmt.Errorf("compare releases/%s with its bundle: %w", v, err)
	}
	d = append(d, files...)
	if e.cfg.Database != nil {
		md, err := migrationDrift(ctx, e.cfg.Database, e.cfg.DataDir, v)
		if err != nil {
			return d, fmt.Errorf("database: %w", err)
		}
		d = append(d, md...)
		sd, err := e.schemaDrift(ctx, v)
		if err != nil {
			return d, fmt.Errorf("database: %w", err)
		}
		d = append(d, sd...)
	}
	return d, nil
}

// CheckDrift computes the site's drift (see agent/internal/drift) and records it: in
// Status().Drift, in the journal for `updateagent status`, and it
// returns it. It is cheap enough to call every few minutes (the runner
// calls it on start, after every job and every DriftInterval): a file is
// hashed again only when its size, time or mode changed since it was last
// found intact; every job's preflight hashes everything. Between jobs
// only: while a job runs CheckDrift returns the last drift found.
//
// A database that cannot be read leaves its part out (the error says
// so); the files' drift is still recorded.
func (e *Engine) CheckDrift(ctx context.Context) ([]string, error) {
	if !e.runMu.TryLock() {
		return e.Status().Drift, nil
	}
	defer e.runMu.Unlock()
	v := e.Status().InstalledVersion
	if v == "" {
		return nil, e.recordDrift(ctx, nil)
	}
	if e.drift.version != v || e.drift.stamps == nil {
		e.drift = driftCache{version: v, stamps: drift.Stamps{}}
	}
	d, err := e.siteDrift(ctx, v, e.drift.stamps)
	if errors.Is(err, errNoMeta) {
		if !e.drift.noMeta {
			e.log.Warn("drift not checked: the agent has no record of the installed release's bundle (installed before the agent kept one); the next upgrade records it", "version", v)
			e.drift.noMeta = true
		}
		return nil, e.recordDrift(ctx, nil)
	}
	if err != nil && d == nil {
		return e.Status().Drift, err
	}
	d = drift.Cap(d)
	if rerr := e.recordDrift(ctx, d); rerr != nil && err == nil {
		err = rerr
	}
	return d, err
}

// recordDrift writes d to the journal when it changed.
func (e *Engine) recordDrift(ctx context.Context, d []string) error {
	if slices.Equal(d, e.Status().Drift) {
		return nil
	}
	if len(d) > 0 {
		e.log.Warn("drift: the running release was changed by hand", "changes", len(d), "first", d[0])
	}
	if err := e.j.setDrift(context.WithoutCancel(ctx), d); err != nil {
		return err
	}
	return e.refresh(ctx)
}
