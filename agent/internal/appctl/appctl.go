// Package appctl stops, starts and health-checks the managed application,
// the product an agent upgrades.
//
// The application is controlled in one of two ways, as the agent's [app]
// config says:
//
//   - an OS service by name (app.service), through github.com/kardianos/service,
//     which drives systemd, SysV, the Windows service control manager and
//     launchd;
//   - two commands (app.start, app.stop), run as argv without a shell, with
//     <install_dir>/current as working directory, bounded by
//     app.command_timeout. A start command launches the application and
//     returns, as `systemctl start` does; on timeout the command's whole
//     process group is killed.
//
// Health is an HTTP URL that must answer 2xx (app.health_url) or a command
// that must exit 0 (app.health_cmd), polled until it passes or
// app.health_timeout runs out.
package appctl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/dropless/dropless/agent/internal/config"
)

// Controller stops, starts and health-checks the managed application.
// Its methods are safe for concurrent use, but the engine calls them one at
// a time.
type Controller interface {
	// Stop stops the application and returns once it has stopped. It
	// succeeds when the application is not running (a stop command must
	// be written that way too, as `systemctl stop` is).
	Stop(ctx context.Context) error
	// Start starts the application and returns once it was launched; it
	// does not wait for a long-running application to exit. Commands run
	// with <install_dir>/current as working directory.
	Start(ctx context.Context) error
	// Healthy polls the health URL (2xx) or command (exit 0) until it
	// passes or the health timeout runs out. The error says what the check
	// last saw, e.g. "health_url answered 503 after 30s"; it is a
	// *HealthError, or ctx's error when ctx ends first.
	Healthy(ctx context.Context) error
}

// CurrentDir is the name of the pointer to the running release inside the
// install dir; commands run there.
const CurrentDir = "current"

// pollInterval is how often Healthy tries again.
const pollInterval = 200 * time.Millisecond

// New returns the Controller that cfg describes. installDir is the agent's
// install_dir (absolute); log receives the output of every command, line by
// line. Zero timeouts get the config package's defaults.
func New(cfg config.App, installDir string, log *slog.Logger) (Controller, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if installDir == "" || !filepath.IsAbs(installDir) {
		return nil, fmt.Errorf("install_dir %q: must be an absolute path", installDir)
	}
	cmdTimeout := cfg.CommandTimeout.Duration
	if cmdTimeout == 0 {
		cmdTimeout = config.DefaultCommandTimeout
	}
	healthTimeout := cfg.HealthTimeout.Duration
	if healthTimeout == 0 {
		healthTimeout = config.DefaultHealthTimeout
	}
	if cmdTimeout < 0 {
		return nil, errors.New("app.command_timeout: must be positive")
	}
	if healthTimeout < 0 {
		return nil, errors.New("app.health_timeout: must be positive")
	}
	r := &runner{
		workDir: filepath.Join(installDir, CurrentDir),
		timeout: cmdTimeout,
		log:     log,
	}
	for key, argv := range map[string][]string{"app.start": cfg.Start, "app.stop": cfg.Stop, "app.health_cmd": cfg.HealthCmd} {
		if len(argv) > 0 && argv[0] == "" {
			return nil, fmt.Errorf("%s: the first element must be a program", key)
		}
	}
	h, err := newHealth(cfg, healthTimeout, r)
	if err != nil {
		return nil, err
	}
	hasCmds := len(cfg.Start) > 0 || len(cfg.Stop) > 0
	switch {
	case cfg.Service != "" && hasCmds:
		return nil, errors.New("app: set either service or start and stop, not both")
	case cfg.Service != "":
		return newService(cfg.Service, cmdTimeout, h, log)
	case len(cfg.Start) == 0 || len(cfg.Stop) == 0:
		return nil, errors.New("app: set service (an OS service name) or both start and stop (commands as arrays)")
	}
	return &commands{
		start:  cfg.Start,
		stop:   cfg.Stop,
		run:    r,
		health: h,
	}, nil
}

// commands controls the application with a start and a stop command.
type commands struct {
	start, stop []string
	run         *runner
	health      *health
}

func (c *commands) Stop(ctx context.Context) error {
	// With nothing installed there is nothing to stop, and no current
	// directory to run in: run from the install dir instead, so a stop
	// command given as an absolute path still runs.
	_, err := c.run.run(ctx, "app.stop", c.stop, true)
	return err
}

func (c *commands) Start(ctx context.Context) error {
	_, err := c.run.run(ctx, "app.start", c.start, false)
	return err
}

func (c *commands) Healthy(ctx context.Context) error { return c.health.wait(ctx) }
