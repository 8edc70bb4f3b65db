package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/dropless/dropless/pkg/buildinfo"
)

func newVersionCmd(stdio IO) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the server's version",
		Args:  noArgs,
		RunE: func(*cobra.Command, []string) error {
			fmt.Fprintln(stdio.Stdout, buildinfo.String())
			return nil
		},
	}
}
