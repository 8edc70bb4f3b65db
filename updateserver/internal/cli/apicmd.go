package cli

import (
	"context"
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/dropless/dropless/updateserver/internal/client"
)

// apiRun makes cmd an operator command: it registers the API flags, and
// its RunE runs check (if not nil) on the flags and arguments alone, so
// that a usage error comes before any request, then run with the server's
// client.
func apiRun(cmd *cobra.Command, stdio IO, check func(cmd *cobra.Command, args []string) error,
	run func(cmd *cobra.Command, args []string, c *client.Client) error) {
	api := withAPI(cmd, stdio)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if check != nil {
			if err := check(cmd, args); err != nil {
				return err
			}
		}
		c, err := api.client()
		if err != nil {
			return err
		}
		return run(cmd, args, c)
	}
}

// showRun is apiRun for a command that fetches one thing and prints it:
// it registers --json too, and prints what fetch returns as JSON with
// --json, else with render.
func showRun[T any](cmd *cobra.Command, stdio IO, check func(cmd *cobra.Command, args []string) error,
	fetch func(ctx context.Context, c *client.Client, args []string) (T, error), render func(T) error) {
	var asJSON bool
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	apiRun(cmd, stdio, check, func(cmd *cobra.Command, args []string, c *client.Client) error {
		v, err := fetch(cmd.Context(), c, args)
		if err != nil {
			return err
		}
		if asJSON {
			return printJSON(stdio.Stdout, v)
		}
		return render(v)
	})
}

// idRun makes cmd an operator command that acts on the one positive ID
// its argument names: notID is the usage error (a format with %q for the
// argument) when it is not one, done the line printed (a format with %d
// for the ID) once act, a client method such as
// (*client.Client).DeleteFreeze, succeeded.
func idRun(cmd *cobra.Command, stdio IO, notID, done string, act func(c *client.Client, ctx context.Context, id int64) error) {
	var id int64
	check := func(_ *cobra.Command, args []string) error {
		var err error
		id, err = strconv.ParseInt(args[0], 10, 64)
		if err != nil || id <= 0 {
			return usagef(notID, args[0])
		}
		return nil
	}
	apiRun(cmd, stdio, check, func(cmd *cobra.Command, _ []string, c *client.Client) error {
		if err := act(c, cmd.Context(), id); err != nil {
			return err
		}
		fmt.Fprintf(stdio.Stdout, done+"\n", id)
		return nil
	})
}

// requireFlags returns a check for showRun that the named flags are given.
func requireFlags(names ...string) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, _ []string) error { return required(cmd, names...) }
}

// productVersionFlags registers --product and --version, the release a
// command acts on.
func productVersionFlags(cmd *cobra.Command, product, version *string) {
	cmd.Flags().StringVar(product, "product", "", "product")
	cmd.Flags().StringVar(version, "version", "", "version")
}
