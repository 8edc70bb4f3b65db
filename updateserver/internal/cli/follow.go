package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/pkg/versions"
	"github.com/dropless/dropless/updateserver/internal/client"
)

func newFollowCmds(stdio IO) (follow, unfollow *cobra.Command) {
	var site, clientName, channel, pin string
	var asJSON bool
	follow = &cobra.Command{
		Use:   `follow (--site S | --client C) --channel C [--pin CONSTRAINT]`,
		Short: "Make a site, or every site of a client, follow a channel",
		Long: `A site that follows a channel is upgraded, inside its maintenance window,
to the newest release on that channel (never a yanked one) that its pin
admits, as soon as one is published or promoted there; multi-hop paths
apply. The pin is a version constraint: "~> 3.2" takes hot fixes on the
3.2 line only (>= 3.2.0, < 3.3.0), "~> 3" the 3 line, ">= 3.0, < 4.0" what
it says. --client sets it on every site the client has now.

A job to a release that failed or rolled back on the site is not tried
again until a newer release comes (or support upgrades by hand); a job of
support's or a rollout's goes first. sites unfollow stops following.`,
		Args: noArgs,
	}
	follow.Flags().StringVar(&site, "site", "", "the site")
	follow.Flags().StringVar(&clientName, "client", "", "every site of this client")
	follow.Flags().StringVar(&channel, "channel", "", "the channel to follow, e.g. stable")
	follow.Flags().StringVar(&pin, "pin", "", `a version constraint the releases must satisfy, e.g. "~> 3.2" (hot fixes on 3.2 only)`)
	follow.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	scope := func() error {
		if (site == "") == (clientName == "") {
			return usagef("give exactly one of --site or --client")
		}
		return nil
	}
	check := func(cmd *cobra.Command, _ []string) error {
		if err := scope(); err != nil {
			return err
		}
		if err := required(cmd, "channel"); err != nil {
			return err
		}
		if _, _, err := versions.ParsePin(pin); err != nil {
			return usageError{err}
		}
		return nil
	}
	apiRun(follow, stdio, check, func(cmd *cobra.Command, _ []string, c *client.Client) error {
		resp, err := c.Follow(cmd.Context(), protocol.FollowRequest{Site: site, Client: clientName, Channel: channel, Pin: pin})
		if err != nil {
			return err
		}
		if asJSON {
			return printJSON(stdio.Stdout, resp)
		}
		what := "channel " + resp.Channel
		if resp.Pin != "" {
			what += " (pin " + resp.Pin + ")"
		}
		fmt.Fprintf(stdio.Stdout, "%s now follow %s\n", strings.Join(resp.Sites, ", "), what)
		printFollowJobs(stdio.Stdout, resp.Jobs)
		return nil
	})

	unfollow = &cobra.Command{
		Use:   `unfollow (--site S | --client C)`,
		Short: "Make a site, or every site of a client, follow no channel",
		Long: `The sites follow no channel from now on; their pending jobs that following
made and no agent has picked up are cancelled.`,
		Args: noArgs,
	}
	unfollow.Flags().StringVar(&site, "site", "", "the site")
	unfollow.Flags().StringVar(&clientName, "client", "", "every site of this client")
	apiRun(unfollow, stdio, func(*cobra.Command, []string) error { return scope() }, func(cmd *cobra.Command, _ []string, c *client.Client) error {
		resp, err := c.Unfollow(cmd.Context(), site, clientName)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdio.Stdout, "%s follow no channel\n", strings.Join(resp.Sites, ", "))
		return nil
	})
	return follow, unfollow
}

// printFollowJobs lists the jobs following made at once.
func printFollowJobs(w io.Writer, jobs []protocol.Job) {
	for _, j := range jobs {
		fmt.Fprintf(w, "%s: %s %s -> %s (%s)\n", j.Site, j.ID, orNothing(j.From), j.To, j.Result)
	}
}

func orNothing(v string) string {
	if v == "" {
		return "(nothing)"
	}
	return v
}
