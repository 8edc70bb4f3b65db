package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/dropless/dropless/pkg/protocol"
)

func newTokenCmd(stdio IO) *cobra.Command {
	var role, name string
	create := &cobra.Command{
		Use:   "create",
		Short: "Create an operator token and print it (admin only)",
		Args:  noArgs,
	}
	api := withAPI(create, stdio)
	create.Flags().StringVar(&role, "role", "", "admin, release, support or viewer")
	create.Flags().StringVar(&name, "name", "", "who or what uses the token (shown in the audit log)")
	create.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := required(cmd, "role", "name"); err != nil {
			return err
		}
		if !protocol.ValidRole(role) {
			return usagef("--role %q: use admin, release, support or viewer", role)
		}
		c, err := api.client()
		if err != nil {
			return err
		}
		t, err := c.CreateToken(cmd.Context(), role, name)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdio.Stdout, t.Token)
		return nil
	}
	return group("token", "Operator tokens", create)
}
