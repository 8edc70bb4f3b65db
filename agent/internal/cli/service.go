package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/kardianos/service"
	"github.com/spf13/cobra"
)

// newService describes the agent's OS service: `updateagent run --config
// FILE` under the service manager (systemd, SysV init, Windows SCM or
// launchd, whichever kardianos/service finds).
func newService(name, cfgPath string, prg service.Interface) (service.Service, error) {
	args := []string{"run", "--name", name}
	if cfgPath != "" {
		abs, err := filepath.Abs(cfgPath)
		if err != nil {
			return nil, err
		}
		args = append(args, "--config", abs)
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	if prg == nil {
		prg = &program{}
	}
	opts := service.KeyValue{
		"Restart":          "always", // systemd: come back after a crash
		"OnFailure":        "restart",
		"LogOutput":        true,
		"DelayedAutoStart": true,
	}
	if p, ok := prg.(*program); ok {
		// Run in the foreground ends on a signal, or when the agent
		// stops by itself (a ca_file that does not load, ...).
		opts["RunWait"] = p.wait
	}
	return service.New(prg, &service.Config{
		Name:        name,
		DisplayName: "Update agent (" + name + ")",
		Description: "Reports the installed version and applies signed upgrades.",
		Executable:  exe,
		Arguments:   args,
		Option:      opts,
	})
}

func serviceCmds(stdio IO) []*cobra.Command {
	mk := func(use, short string, needConfig bool, do func(*serviceOp) error) *cobra.Command {
		var cfgPath, name string
		cmd := &cobra.Command{
			Use:   use,
			Short: short,
			Args:  noArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				if needConfig {
					if _, err := loadConfig(cfgPath); err != nil {
						return err
					}
				}
				svc, err := newService(name, cfgPath, nil)
				if err != nil {
					return err
				}
				op := &serviceOp{svc: svc, name: name, system: service.ChosenSystem().String(), out: stdio.Stdout}
				if err := do(op); err != nil {
					return fmt.Errorf("%s service %s: %w", cmd.Name(), name, err)
				}
				return nil
			},
		}
		cmd.Flags().StringVar(&cfgPath, "config", "", "agent config file (TOML)")
		cmd.Flags().StringVar(&name, "name", DefaultServiceName, "service name")
		return cmd
	}
	install := mk("install --config FILE", "Register the agent as an OS service and start it", true, func(op *serviceOp) error {
		if op.installed() == yes {
			return fmt.Errorf("it is already installed (%s): start it with updateagent start, or run updateagent uninstall first to install it again", op.system)
		}
		if err := op.svc.Install(); err != nil {
			return op.explain(err)
		}
		if err := op.start(); err != nil {
			return err
		}
		op.printf("service %s installed and started (%s)", op.name, op.system)
		return nil
	})
	uninstall := mk("uninstall", "Stop and remove the agent's OS service", false, func(op *serviceOp) error {
		if op.installed() == no {
			op.printf("service %s is not installed (%s): nothing to remove", op.name, op.system)
			return nil
		}
		op.svc.Stop() // may already be stopped
		if err := op.svc.Uninstall(); err != nil {
			return op.explain(err)
		}
		op.removeRunlevelLinks()
		op.printf("service %s stopped and removed (%s)", op.name, op.system)
		return nil
	})
	start := mk("start", "Start the agent's OS service", false, func(op *serviceOp) error {
		if op.installed() == no {
			return fmt.Errorf("it is not installed (%s): install it first with updateagent install --config FILE", op.system)
		}
		if err := op.start(); err != nil {
			return err
		}
		op.printf("service %s started (%s)", op.name, op.system)
		return nil
	})
	stop := mk("stop", "Stop the agent's OS service", false, func(op *serviceOp) error {
		if op.installed() == no {
			return fmt.Errorf("it is not installed (%s): nothing to stop", op.system)
		}
		if err := op.svc.Stop(); err != nil {
			return op.explain(err)
		}
		op.printf("service %s stopped (%s)", op.name, op.system)
		return nil
	})
	return []*cobra.Command{install, uninstall, start, stop}
}

type tristate int

const (
	unknown tristate = iota
	yes
	no
)

// serviceOp is one service command's view of the service.
type serviceOp struct {
	svc          service.Service
	name, system string
	out          io.Writer
}

func (op *serviceOp) printf(format string, args ...any) { fmt.Fprintf(op.out, format+"\n", args...) }

// installed tells whether the service is installed. Service managers
// answer Status differently for a service they do not know (SysV's
// `service NAME status` just fails), so the files they install are
// looked at too.
func (op *serviceOp) installed() tristate {
	_, err := op.svc.Status()
	switch {
	case err == nil:
		return yes
	case errors.Is(err, service.ErrNotInstalled):
		return no
	}
	if runtime.GOOS != "linux" {
		return unknown
	}
	for _, p := range []string{"/etc/init.d/" + op.name, "/etc/systemd/system/" + op.name + ".service", "/etc/init/" + op.name + ".conf"} {
		if _, err := os.Stat(p); err == nil {
			return yes
		}
	}
	return no
}

// start starts the service and checks, for a few seconds, that it stays
// up: an agent that exits at once (a bad config, a data dir it cannot
// write) is reported with where its log is.
func (op *serviceOp) start() error {
	if err := op.svc.Start(); err != nil {
		return fmt.Errorf("it failed to start (%v): see its log (%s)", err, op.logHint())
	}
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		time.Sleep(250 * time.Millisecond)
		if st, err := op.svc.Status(); err == nil && st == service.StatusStopped {
			return fmt.Errorf("it started but exited at once: see its log (%s)", op.logHint())
		}
	}
	return nil
}

// removeRunlevelLinks removes the /etc/rc?.d links kardianos/service
// makes when it installs a SysV init script and leaves behind when it
// removes it (v1.3.0): dangling links to a script that is gone.
func (op *serviceOp) removeRunlevelLinks() {
	if runtime.GOOS != "linux" || !strings.Contains(op.system, "systemv") {
		return
	}
	for _, l := range []string{"0", "1", "6"} {
		os.Remove("/etc/rc" + l + ".d/K02" + op.name)
	}
	for _, l := range []string{"2", "3", "4", "5"} {
		os.Remove("/etc/rc" + l + ".d/S50" + op.name)
	}
}

// logHint says where the service manager keeps the agent's output.
func (op *serviceOp) logHint() string {
	switch {
	case strings.Contains(op.system, "systemd"):
		return "journalctl -u " + op.name
	case strings.Contains(op.system, "systemv"), strings.Contains(op.system, "openrc"):
		return "/var/log/" + op.name + ".err and /var/log/" + op.name + ".log"
	case strings.Contains(op.system, "upstart"):
		return "/var/log/upstart/" + op.name + ".log"
	case strings.Contains(op.system, "windows"):
		return "the Windows Event Log, Application, source " + op.name
	}
	return "the system log"
}

// explain adds the likely cause of a service manager's error: missing
// privileges only when the process lacks them.
func (op *serviceOp) explain(err error) error {
	if errors.Is(err, os.ErrPermission) || (runtime.GOOS != "windows" && os.Geteuid() != 0) {
		return fmt.Errorf("%w (managing OS services needs root: run it with sudo)", err)
	}
	if runtime.GOOS == "windows" && strings.Contains(strings.ToLower(err.Error()), "access is denied") {
		return fmt.Errorf("%w (run it from an Administrator prompt)", err)
	}
	return err
}
