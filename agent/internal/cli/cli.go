// Package cli is the updateagent command line: run (what the service
// runs), install/uninstall/start/stop of the OS service, status,
// apply-offline (an air-gap file), support-bundle (agent/internal/support) and version.
//
// Exit codes: 0 success, 1 failure, 2 usage error. Errors are one line on
// stderr that says what to do.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/kardianos/service"
	"github.com/spf13/cobra"

	"github.com/dropless/dropless/agent/internal/config"
	"github.com/dropless/dropless/agent/internal/engine"
	"github.com/dropless/dropless/agent/internal/runner"
	"github.com/dropless/dropless/pkg/buildinfo"
)

// IO is where a command reads and writes.
type IO struct {
	Stdout, Stderr io.Writer
}

type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// Run runs the updateagent command line and returns the exit code.
func Run(ctx context.Context, args []string, stdio IO) int {
	root := newRoot(stdio)
	root.SetArgs(args)
	root.SetOut(stdio.Stdout)
	root.SetErr(stdio.Stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	msg := strings.TrimSpace(err.Error())
	var ue usageError
	if errors.As(err, &ue) || strings.HasPrefix(msg, "unknown command") || strings.HasPrefix(msg, "unknown flag") || strings.HasPrefix(msg, "unknown shorthand flag") {
		fmt.Fprintf(stdio.Stderr, "updateagent: %s (see --help)\n", msg)
		return 2
	}
	fmt.Fprintf(stdio.Stderr, "updateagent: %s\n", msg)
	return 1
}

// DefaultServiceName is the OS service the agent installs as.
const DefaultServiceName = "updateagent"

func newRoot(stdio IO) *cobra.Command {
	root := &cobra.Command{
		Use:           "updateagent",
		Short:         "The on-premise upgrade agent: reports what runs and applies upgrades",
		SilenceErrors: true,
		SilenceUsage:  true,
		Args:          noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usagef("updateagent needs a command: run, install, uninstall, start, stop, status, apply-offline, support-bundle or version")
		},
	}
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newRunCmd(stdio), newStatusCmd(stdio), newVersionCmd(stdio), newCheckConfigCmd(stdio))
	root.AddCommand(serviceCmds(stdio)...)
	root.AddCommand(newTUFClientCmd(stdio), newApplyOfflineCmd(stdio), newSupportBundleCmd(stdio))
	return root
}

func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("unknown command %q for %q", args[0], cmd.CommandPath())
	}
	return nil
}

func newVersionCmd(stdio IO) *cobra.Command {
	return &cobra.Command{
		Use: "version", Short: "Print the agent's version", Args: noArgs,
		RunE: func(*cobra.Command, []string) error {
			fmt.Fprintln(stdio.Stdout, buildinfo.String())
			return nil
		},
	}
}

// defaultConfigPath is status's --config when none is given: the
// packaged path (config.DefaultPath). Tests point it elsewhere.
var defaultConfigPath = config.DefaultPath

// loadConfig reads --config, which every command but version needs.
func loadConfig(path string) (*config.Config, error) {
	if path == "" {
		return nil, usagef("--config FILE is required")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	return config.Load(abs)
}

func newRunCmd(stdio IO) *cobra.Command {
	var cfgPath, name string
	cmd := &cobra.Command{
		Use:   "run --config FILE",
		Short: "Run the agent in the foreground (what the service runs); stops on SIGINT or SIGTERM",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cfgPath)
			if err != nil {
				return err
			}
			log := slog.New(slog.NewTextHandler(stdio.Stderr, nil))
			prg := &program{cfg: cfg, log: log}
			svc, err := newService(name, cfgPath, prg)
			if err != nil {
				return err
			}
			// Run handles SIGINT/SIGTERM (and the Windows SCM) itself.
			if err := svc.Run(); err != nil {
				return err
			}
			return prg.err
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "", "agent config file (TOML)")
	cmd.Flags().StringVar(&name, "name", DefaultServiceName, "service name")
	return cmd
}

// program adapts the runner to kardianos/service.
type program struct {
	cfg    *config.Config
	log    *slog.Logger
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

func (p *program) Start(service.Service) error {
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel, p.done = cancel, make(chan struct{})
	go func() {
		defer close(p.done)
		if err := runner.New(p.cfg, p.log).Run(ctx); err != nil {
			p.err = err
			p.log.Error("agent stopped", "err", err)
			if !service.Interactive() {
				return
			}
		}
	}()
	return nil
}

// wait returns on SIGINT or SIGTERM, or once the agent has stopped by
// itself (Start must have run).
func (p *program) wait() {
	sig := make(chan os.Signal, 3)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	defer signal.Stop(sig)
	select {
	case <-sig:
	case <-p.done:
	}
}

func (p *program) Stop(service.Service) error {
	p.cancel()
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.log.Warn("agent did not stop within 30s")
	}
	return nil
}

func newStatusCmd(stdio IO) *cobra.Command {
	var cfgPath string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status [--config FILE] [--json]",
		Short: "Show the installed version, the current job and step, the last result and whether the server is reachable",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cfgPath)
			if errors.Is(err, fs.ErrNotExist) && !cmd.Flags().Changed("config") {
				return fmt.Errorf("no agent config at %s, where the agent's package puts it: give the config with --config FILE", cfgPath)
			}
			if err != nil {
				return err
			}
			st, err := engine.ReadStatus(cfg.DataDir)
			if err != nil {
				return fmt.Errorf("read the agent's journal in %s: %w (has the agent run yet?)", cfg.DataDir, err)
			}
			contact, _ := runner.ReadContact(cfg.DataDir)
			out := newStatus(cfg, st, contact)
			if asJSON {
				return printJSON(stdio.Stdout, out)
			}
			printStatus(stdio.Stdout, out)
			return nil
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", defaultConfigPath(), "agent config file (TOML)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
