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

// siteNamesNote is the rule every enroll-token help text states.
const siteNamesNote = `Site names are global: one name is one site, whatever the client (sites
show SITE, upgrade --site S and history --site S name a site alone).`

func newEnrollTokenCmd(stdio IO) *cobra.Command {
	var clientName, site string
	var expires time.Duration
	var uses int
	var replace bool
	create := &cobra.Command{
		Use:   "create --client CLIENT [--expires DURATION] [--uses N] [--site SITE [--replace]]",
		Short: "Create a token with which a client's agents enroll (support or admin)",
		Long: `Create a token with which a client's agents enroll, and print it.

A site name not enrolled yet may be enrolled with any live token of its
client; with --site the token enrolls that one site name only. A site that
is already enrolled is enrolled again (a new machine, a lost credential;
its old credential then stops working) only with a token made with
--site SITE --replace for the site's client. Any other token is refused,
with a message that says nothing about who owns the name.

` + siteNamesNote,
		Args: noArgs,
	}
	create.Flags().StringVar(&clientName, "client", "", "the client whose sites enroll with it")
	create.Flags().DurationVar(&expires, "expires", 24*time.Hour, "how long the token stays valid")
	create.Flags().IntVar(&uses, "uses", 1, "how many agents may enroll with it")
	create.Flags().StringVar(&site, "site", "", "enroll only this site name")
	create.Flags().BoolVar(&replace, "replace", false, "with --site: may enroll the site again if already enrolled (its old credential stops working)")
	check := func(cmd *cobra.Command, _ []string) error {
		if err := required(cmd, "client"); err != nil {
			return err
		}
		if expires <= 0 || uses < 1 {
			return usagef("--expires must be positive and --uses at least 1")
		}
		if replace && site == "" {
			return usagef("--replace needs --site: a token that may enroll an existing site again is made for that one site")
		}
		return nil
	}
	apiRun(create, stdio, check, func(cmd *cobra.Command, _ []string, c *client.Client) error {
		t, err := c.CreateEnrollToken(cmd.Context(), protocol.CreateEnrollTokenRequest{Client: clientName, ExpiresIn: expires.String(), Uses: uses, Site: site, Replace: replace})
		if err != nil {
			return err
		}
		fmt.Fprintln(stdio.Stdout, t.Token)
		return nil
	})

	list := &cobra.Command{
		Use:   "list [--json]",
		Short: "List enroll tokens, used-up and revoked ones too; never their secrets (support or admin)",
		Long: `List enroll tokens: ID (for revoke), client, the site it is bound to,
whether it may replace an enrolled site, uses left, expiry, when and by
whom created, and when revoked. Secrets are never shown.

` + siteNamesNote,
		Args: noArgs,
	}
	showRun(list, stdio, nil, func(ctx context.Context, c *client.Client, _ []string) ([]protocol.EnrollTokenInfo, error) {
		return c.EnrollTokens(ctx)
	}, func(tokens []protocol.EnrollTokenInfo) error {
		now := time.Now()
		rows := make([][]string, 0, len(tokens))
		for _, t := range tokens {
			site, repl, exp, revoked := "(any)", "no", ago(t.ExpiresAt), "-"
			if t.Site != "" {
				site = t.Site
			}
			if t.Replace {
				repl = "yes"
			}
			if !now.Before(t.ExpiresAt) {
				exp += " (expired)"
			}
			if t.RevokedAt != nil {
				revoked = ago(*t.RevokedAt)
			}
			rows = append(rows, []string{strconv.FormatInt(t.ID, 10), t.Client, site, repl, strconv.Itoa(t.UsesLeft), exp, ago(t.CreatedAt), t.CreatedBy, revoked})
		}
		return table(stdio.Stdout, []string{"ID", "CLIENT", "SITE", "REPLACE", "USES LEFT", "EXPIRES", "CREATED", "CREATED BY", "REVOKED"}, rows)
	})

	revoke := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke an enroll token: no agent enrolls with it any more (support or admin)",
		Long: `Revoke an enroll token (its ID is in enroll-token list): no agent
enrolls with it from then on. Sites already enrolled with it keep their
own credentials.`,
		Args: exactArgs(1, "the enroll token's ID (see enroll-token list)"),
	}
	idRun(revoke, stdio, "enroll token ID %q is not a number: give the ID enroll-token list shows", "revoked enroll token %d",
		(*client.Client).RevokeEnrollToken)
	return group("enroll-token", "Tokens with which agents enroll", create, list, revoke)
}
