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

func newTokenCmd(stdio IO) *cobra.Command {
	var role, name string
	var expires time.Duration
	create := &cobra.Command{
		Use:   "create --role ROLE --name NAME [--expires DURATION]",
		Short: "Create an operator token and print it (admin only)",
		Long: `Create an operator token and print it. The server keeps only its hash:
the token is shown once. NAME must differ from every live token's name
(revoke NAME frees it). With --expires the token is refused after that
long (e.g. 720h); without it, it lasts until revoked.`,
		Args: noArgs,
	}
	create.Flags().StringVar(&role, "role", "", "admin, release, support or viewer")
	create.Flags().StringVar(&name, "name", "", "who or what uses the token (shown in the audit log)")
	create.Flags().DurationVar(&expires, "expires", 0, "refuse the token after this long (e.g. 720h); default: never")
	check := func(cmd *cobra.Command, _ []string) error {
		if err := required(cmd, "role", "name"); err != nil {
			return err
		}
		if !protocol.ValidRole(role) {
			return usagef("--role %q: use admin, release, support or viewer", role)
		}
		if cmd.Flags().Changed("expires") && expires <= 0 {
			return usagef("--expires must be a positive duration, e.g. 720h")
		}
		return nil
	}
	apiRun(create, stdio, check, func(cmd *cobra.Command, _ []string, c *client.Client) error {
		req := protocol.CreateTokenRequest{Role: role, Name: name}
		if cmd.Flags().Changed("expires") {
			req.ExpiresIn = expires.String()
		}
		t, err := c.CreateToken(cmd.Context(), req)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdio.Stdout, t.Token)
		return nil
	})

	list := &cobra.Command{
		Use:   "list [--json]",
		Short: "List operator tokens, revoked ones too; never their secrets (admin only)",
		Long: `List operator tokens: name, role, when and by whom created, last used
(recorded at most once a minute, so up to a minute stale), when it expires
and when it was revoked. Secrets are never shown: the server does not
keep them.`,
		Args: noArgs,
	}
	showRun(list, stdio, nil, func(ctx context.Context, c *client.Client, _ []string) ([]protocol.TokenInfo, error) {
		return c.Tokens(ctx)
	}, func(tokens []protocol.TokenInfo) error {
		now := time.Now()
		rows := make([][]string, 0, len(tokens))
		for _, t := range tokens {
			used, exp, revoked := "never", "never", "-"
			if t.LastUsedAt != nil {
				used = ago(*t.LastUsedAt)
			}
			if t.ExpiresAt != nil {
				exp = ago(*t.ExpiresAt)
				if !now.Before(*t.ExpiresAt) {
					exp += " (expired)"
				}
			}
			if t.RevokedAt != nil {
				revoked = ago(*t.RevokedAt)
			}
			rows = append(rows, []string{strconv.FormatInt(t.ID, 10), t.Name, t.Role, ago(t.CreatedAt), t.CreatedBy, used, exp, revoked})
		}
		return table(stdio.Stdout, []string{"ID", "NAME", "ROLE", "CREATED", "CREATED BY", "LAST USED", "EXPIRES", "REVOKED"}, rows)
	})

	revoke := &cobra.Command{
		Use:   "revoke NAME",
		Short: "Revoke the live token named NAME: refused from the next request on (admin only)",
		Long: `Revoke the live token named NAME: the server refuses it from the next
request on. Where several live tokens share NAME (made before names were
unique), all of them are revoked. The last live admin token cannot be
revoked: create another admin token first.`,
		Args: exactArgs(1, "the token's NAME (see token list)"),
	}
	apiRun(revoke, stdio, nil, func(cmd *cobra.Command, args []string, c *client.Client) error {
		r, err := c.RevokeToken(cmd.Context(), args[0])
		if err != nil {
			return err
		}
		if r.Revoked == 1 {
			fmt.Fprintf(stdio.Stdout, "revoked token %s\n", r.Name)
		} else {
			fmt.Fprintf(stdio.Stdout, "revoked %d tokens named %s (they shared the name before names were unique)\n", r.Revoked, r.Name)
		}
		return nil
	})
	return group("token", "Operator tokens", create, list, revoke)
}
