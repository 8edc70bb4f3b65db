package runner

import (
	"log/slog"
	"os"
	"path/filepath"

	"github.com/dropless/dropless/agent/internal/appctl"
	"github.com/dropless/dropless/agent/internal/config"
	"github.com/dropless/dropless/agent/internal/engine"
)

// EngineConfig is the engine's configuration for an agent config: the one
// place that maps config keys onto the engine, for every command that runs
// the engine (the service's loop, and any command that applies a bundle).
func EngineConfig(cfg *config.Config, app appctl.Controller, f engine.Fetcher, log *slog.Logger) engine.Config {
	return engine.Config{
		Product:        cfg.Product,
		AllowDowngrade: cfg.AllowDowngrade,
		InstallDir:     cfg.InstallDir,
		DataDir:        cfg.DataDir,
		KeepReleases:   cfg.KeepReleases,
		App:            app,
		Database:       cfg.Database,
		Data:           dataPaths(cfg.Data),
		DriftIgnore:    cfg.DriftIgnore,
		Fetcher:        f,
		Log:            log,
		Failpoint:      os.Getenv(engine.FailpointEnv),
	}
}

// dataPaths are the [[data]] paths, clean.
func dataPaths(ds []config.Data) []string {
	var ps []string
	for _, d := range ds {
		ps = append(ps, filepath.Clean(d.Path))
	}
	return ps
}
