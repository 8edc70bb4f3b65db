package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

// newCheckConfigCmd checks a config file without running anything: the
// packages' maintainer scripts use it to start the service only once
// client IT has filled in the config.
func newCheckConfigCmd(stdio IO) *cobra.Command {
	var cfgPath string
	cmd := &cobra.Command{
		Use:   "check-config --config FILE",
		Short: "Check the config file (exit 0 when the agent can run with it, 1 with the first bad key)",
		Args:  noArgs,
		RunE: func(*cobra.Command, []string) error {
			if _, err := loadConfig(cfgPath); err != nil {
				return err
			}
			fmt.Fprintf(stdio.Stdout, "config %s is valid\n", cfgPath)
			return nil
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "", "agent config file (TOML)")
	return cmd
}
