package cli

import (
	"context"
	"fmt"
	"net/http"

	"github.com/spf13/cobra"

	"github.com/dropless/dropless/updateserver/internal/mirror"
)

func newRepoCmd(stdio IO) *cobra.Command {
	export := &cobra.Command{
		Use:   "export DIR",
		Short: "Write a static mirror of the TUF repository into DIR",
		Long: `Write a static mirror of the server's TUF repository into DIR:
DIR/metadata/ and DIR/targets/. Any plain HTTP server over DIR serves a
repository that agents verify (metadata URL .../metadata/, targets URL
.../targets/). Targets already in DIR are not fetched again.

The timestamp in the mirror expires like the server's (a day by default):
run the export on a schedule so the mirror stays fresh.`,
		Args: exactArgs(1, "the directory DIR to write the mirror into"),
	}
	api := withAPI(export, stdio)
	export.RunE = func(cmd *cobra.Command, args []string) error {
		// The repository is public: a token is not needed.
		if api.token == "" {
			api.token = "-"
		}
		c, err := api.client()
		if err != nil {
			return err
		}
		get := func(ctx context.Context, p string) (*http.Response, error) { return c.Get(ctx, "/tuf/"+p) }
		res, err := mirror.Export(cmd.Context(), get, args[0])
		if err != nil {
			return fmt.Errorf("export: %w", err)
		}
		fmt.Fprintf(stdio.Stdout, "exported to %s: root versions 1..%d, snapshot v%d, targets v%d, %d targets fetched, %d already there\n",
			args[0], res.RootVersions, res.SnapshotVersion, res.TargetsVersion, res.TargetsFetched, res.TargetsReused)
		return nil
	}
	return group("repo", "The TUF repository", export)
}
