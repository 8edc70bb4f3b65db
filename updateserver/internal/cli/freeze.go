package cli

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/client"
)

func newFreezeCmd(stdio IO) *cobra.Command {
	var from, to, clientName, reason string
	create := &cobra.Command{
		Use:   "create --from TIME --to TIME [--client C] --reason TEXT",
		Short: "Freeze: no job starts from TIME to TIME (everywhere, or for one client's sites) unless upgrade --now",
		Long: `Create a freeze: from --from up to --to (RFC 3339 times, e.g.
2025-12-20T00:00:00+01:00) no job starts, on every site or on the sites of
--client (e.g. its year-end closing). Jobs wait and start on their own
once the freeze ends, inside their window. upgrade --now overrides it.
The reason is shown to support wherever a job waits.`,
		Args: noArgs,
	}
	create.Flags().StringVar(&from, "from", "", "when the freeze starts (RFC 3339)")
	create.Flags().StringVar(&to, "to", "", "when it ends (RFC 3339)")
	create.Flags().StringVar(&clientName, "client", "", "freeze only this client's sites")
	create.Flags().StringVar(&reason, "reason", "", "why (shown wherever a job waits)")
	var f, t time.Time
	check := func(cmd *cobra.Command, _ []string) error {
		if err := required(cmd, "from", "to", "reason"); err != nil {
			return err
		}
		var err error
		if f, err = parseRFC3339("from", from); err != nil {
			return err
		}
		t, err = parseRFC3339("to", to)
		return err
	}
	apiRun(create, stdio, check, func(cmd *cobra.Command, _ []string, c *client.Client) error {
		fz, err := c.CreateFreeze(cmd.Context(), protocol.FreezeRequest{Client: clientName, From: f, To: t, Reason: reason})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdio.Stdout, "%d\n", fz.ID)
		return nil
	})

	list := &cobra.Command{
		Use:   "list [--json]",
		Short: "List the freezes not yet ended",
		Args:  noArgs,
	}
	showRun(list, stdio, nil, func(ctx context.Context, c *client.Client, _ []string) ([]protocol.Freeze, error) {
		return c.Freezes(ctx)
	}, func(fs []protocol.Freeze) error {
		rows := make([][]string, 0, len(fs))
		for _, f := range fs {
			who := "(all)"
			if f.Client != "" {
				who = f.Client
			}
			rows = append(rows, []string{strconv.FormatInt(f.ID, 10), who, f.From.Format(time.RFC3339), f.To.Format(time.RFC3339), f.CreatedBy, f.Reason})
		}
		return table(stdio.Stdout, []string{"ID", "CLIENT", "FROM", "TO", "BY", "REASON"}, rows)
	})

	del := &cobra.Command{
		Use:   "delete ID",
		Short: "Delete a freeze: waiting jobs may start again inside their window",
		Args:  exactArgs(1, "the freeze ID (see freeze list)"),
	}
	idRun(del, stdio, "freeze ID %q is not a number: see freeze list", "freeze %d deleted", (*client.Client).DeleteFreeze)
	return group("freeze", "Freezes: periods in which no job starts", create, list, del)
}

func parseRFC3339(flag, v string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return t, usagef("--%s %q is not an RFC 3339 time: write it like 2025-12-20T00:00:00+01:00 or 2025-12-20T00:00:00Z", flag, v)
	}
	return t, nil
}
