package cli

import (
	"fmt"
	"os"
	"path/filepath"

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
	mk := func(use, short string, needConfig bool, do func(service.Service) error, done string) *cobra.Command {
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
				if err := do(svc); err != nil {
					return fmt.Errorf("%s service %s: %w (are you root / Administrator?)", cmd.Name(), name, err)
				}
				fmt.Fprintf(stdio.Stdout, done+"\n", name, service.ChosenSystem().String())
				return nil
			},
		}
		cmd.Flags().StringVar(&cfgPath, "config", "", "agent config file (TOML)")
		cmd.Flags().StringVar(&name, "name", DefaultServiceName, "service name")
		return cmd
	}
	install := mk("install --config FILE", "Register the agent as an OS service and start it", true, func(s service.Service) error {
		if err := s.Install(); err != nil {
			return err
		}
		return s.Start()
	}, "service %s installed and started (%s)")
	uninstall := mk("uninstall", "Stop and remove the agent's OS service", false, func(s service.Service) error {
		s.Stop() // may already be stopped
		return s.Uninstall()
	}, "service %s stopped and removed (%s)")
	start := mk("start", "Start the agent's OS service", false, service.Service.Start, "service %s started (%s)")
	stop := mk("stop", "Stop the agent's OS service", false, service.Service.Stop, "service %s stopped (%s)")
	return []*cobra.Command{install, uninstall, start, stop}
}
