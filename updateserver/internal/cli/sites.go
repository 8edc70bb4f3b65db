package cli

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/client"
	"github.com/dropless/dropless/updateserver/internal/fleet"
)

func newSitesCmd(stdio IO) *cobra.Command {
	var clientName, product string
	list := &cobra.Command{
		Use:   "list [--client C] [--product P] [--json]",
		Short: "List sites with the version that really runs",
		Args:  noArgs,
	}
	list.Flags().StringVar(&clientName, "client", "", "only this client's sites")
	list.Flags().StringVar(&product, "product", "", "only sites of this product")
	showRun(list, stdio, nil, func(ctx context.Context, c *client.Client, _ []string) ([]protocol.Site, error) {
		return c.Sites(ctx, clientName, product)
	}, func(sites []protocol.Site) error {
		rows := make([][]string, 0, len(sites))
		for _, s := range sites {
			rows = append(rows, []string{s.Site, s.Client, s.Product, orDash(s.InstalledVersion), orDash(s.TargetVersion), stateColumn(s),
				orDash(s.LastResult), seenColumn(s), orDash(s.AgentVersion), followColumn(s), windowColumn(s)})
		}
		return table(stdio.Stdout, []string{"SITE", "CLIENT", "PRODUCT", "INSTALLED", "TARGET", "STATE", "LAST RESULT", "LAST SEEN", "AGENT", "CHANNEL", "WINDOW"}, rows)
	})

	show := &cobra.Command{
		Use:   "show SITE [--json]",
		Short: "Show one site: versions, agent, current and last job",
		Args:  exactArgs(1, "the SITE name"),
	}
	showRun(show, stdio, nil, func(ctx context.Context, c *client.Client, args []string) (protocol.Site, error) {
		return c.Site(ctx, args[0])
	}, func(s protocol.Site) error {
		w := stdio.Stdout
		seen := "never"
		if s.LastSeen != nil {
			seen = s.LastSeen.Local().Format(time.RFC3339) + " (" + since(*s.LastSeen) + ")"
		}
		if !s.Online {
			seen = "offline, " + seen
		}
		fmt.Fprintf(w, "site:       %s\nclient:     %s\nproduct:    %s\ninstalled:  %s\ntarget:     %s\nstate:      %s\nlast seen:  %s\nagent:      %s on %s/%s, host %s\nenrolled:   %s\n",
			s.Site, s.Client, s.Product, orDash(s.InstalledVersion), orDash(s.TargetVersion), stateColumn(s), seen,
			orDash(s.AgentVersion), orDash(s.OS), orDash(s.Arch), orDash(s.Hostname), s.EnrolledAt.Local().Format(time.RFC3339))
		fmt.Fprintf(w, "window:     %s\nfollows:    %s\n", windowColumn(s), followColumn(s))
		if s.LastResult != "" {
			last := s.LastResult
			if s.LastReason != "" {
				last += ": " + s.LastReason
			}
			fmt.Fprintf(w, "last result: %s\n", last)
		}
		if len(s.Drift) > 0 {
			if len(protocol.BlockingDrift(s.Drift)) > 0 {
				fmt.Fprintf(w, "\nDRIFT (changed by hand; upgrades need --accept-drift):\n")
			} else {
				fmt.Fprintf(w, "\nDRIFT (changed by hand; reported only, upgrades go ahead):\n")
			}
			for _, d := range s.Drift {
				fmt.Fprintf(w, "  %s\n", d)
			}
		}
		if s.CurrentJob != nil {
			fmt.Fprintf(w, "\ncurrent job:\n")
			printJob(w, *s.CurrentJob)
		}
		if s.LastJob != nil {
			fmt.Fprintf(w, "\nlast job:\n")
			printJob(w, *s.LastJob)
		}
		return nil
	})
	follow, unfollow := newFollowCmds(stdio)
	return group("sites", "Sites and the versions they run", list, show, follow, unfollow, newImportReportCmd(stdio))
}

// stateColumn is a site's state: "upgrading (STEP)" while a job runs,
// "pending" while one waits, else its agent's state; "(drift)" when its
// files were changed by hand.
func stateColumn(s protocol.Site) string {
	state := s.State
	if s.State == protocol.SiteUpgrading && s.Step != "" {
		state += " (" + s.Step + ")"
	}
	if len(s.Drift) > 0 {
		state += " (drift)"
	}
	return state
}

// seenColumn is when a site last checked in, flagged when it is offline.
func seenColumn(s protocol.Site) string {
	if s.LastSeen == nil {
		return "never (offline)"
	}
	if !s.Online {
		return "OFFLINE " + since(*s.LastSeen)
	}
	return since(*s.LastSeen)
}

// followColumn is the channel a site follows, with its pin.
func followColumn(s protocol.Site) string {
	if s.Channel == "" {
		return "-"
	}
	if s.Pin != "" {
		return s.Channel + " " + s.Pin
	}
	return s.Channel
}

// windowColumn says whether a site's jobs may start: "open", or when
// they may and why not (a freeze's reason).
func windowColumn(s protocol.Site) string {
	if s.WindowOpen {
		return "open"
	}
	out := "closed"
	if s.NextWindow != "" {
		if t, err := time.Parse(time.RFC3339, s.NextWindow); err == nil {
			out = "opens " + t.Local().Format("2006-01-02 15:04 MST")
		}
	}
	if strings.HasPrefix(s.WaitReason, "frozen") {
		out += " (" + s.WaitReason + ")"
	}
	return out
}

func printJob(w io.Writer, j protocol.Job) {
	from := j.From
	if from == "" {
		from = "(nothing)"
	}
	fmt.Fprintf(w, "  %s  %s -> %s  %s", j.ID, from, j.To, strings.ToUpper(j.Result))
	if j.Reason != "" {
		fmt.Fprintf(w, ": %s", j.Reason)
	}
	fmt.Fprintf(w, "\n  created %s by %s", j.CreatedAt.Local().Format(time.RFC3339), j.CreatedBy)
	if j.DowntimeMS != nil {
		fmt.Fprintf(w, "; app down %s", (time.Duration(*j.DowntimeMS) * time.Millisecond).String())
	}
	fmt.Fprintln(w)
	for i, e := range j.Events {
		if i == 1 && j.EventsDropped > 0 {
			fmt.Fprintf(w, "         … %d events dropped (the server keeps a job's first and newest events) …\n", j.EventsDropped)
		}
		msg := ""
		if e.Message != "" {
			msg = "  " + e.Message
		}
		fmt.Fprintf(w, "    %3d  %s  %-12s%s\n", e.Seq, e.At.Local().Format("15:04:05.000"), e.State, msg)
	}
}

func since(t time.Time) string {
	d := time.Since(t).Round(time.Second)
	if d < 0 {
		d = 0
	}
	return d.String() + " ago"
}

func newUpgradeCmd(stdio IO) *cobra.Command {
	var site, clientName, to, product, reason string
	var now, acceptDrift, allowDowngrade, allowIrreversible, force bool
	cmd := &cobra.Command{
		Use:   "upgrade (--site S | --client C) --to VERSION [--now [--reason TEXT]] [--product updateagent]",
		Short: "Assign a version to a site or to every site of a client",
		Long: `Assign VERSION to a site, or to every site of a client: one job per site.
Where VERSION's upgrade_from does not admit the installed version, the
upgrade goes through the intermediate releases it needs (never a yanked
one): one job per hop, each in history. Without --now the job waits for
the site's maintenance window and the end of any freeze; --now overrides
both for emergencies (audited with --reason). With --product updateagent it
assigns a version of the agent itself, planned from the agent version the
site reports.`,
		Args: noArgs,
	}
	cmd.Flags().StringVar(&site, "site", "", "the site to upgrade")
	cmd.Flags().StringVar(&clientName, "client", "", "upgrade every site of this client")
	cmd.Flags().StringVar(&to, "to", "", "the version to install")
	cmd.Flags().StringVar(&product, "product", "", "updateagent to upgrade the sites' agent (default: the sites' own product)")
	cmd.Flags().BoolVar(&now, "now", false, "do not wait for the maintenance window or a freeze (audited)")
	cmd.Flags().StringVar(&reason, "reason", "", "why --now overrides the window and freezes (audited)")
	cmd.Flags().BoolVar(&acceptDrift, "accept-drift", false, "upgrade a site whose files or migrations were changed by hand, overwriting them (audited)")
	cmd.Flags().BoolVar(&allowDowngrade, "allow-downgrade", false, "go back to an older version, running down migrations (audited)")
	cmd.Flags().BoolVar(&allowIrreversible, "allow-irreversible", false, "install a release whose migrations cannot be rolled back (audited)")
	cmd.Flags().BoolVar(&force, "force", false, "install VERSION even though it is yanked (audited)")
	check := func(cmd *cobra.Command, _ []string) error {
		if err := required(cmd, "to"); err != nil {
			return err
		}
		if (site == "") == (clientName == "") {
			return usagef("give exactly one of --site or --client")
		}
		if reason != "" && !now {
			return usagef("--reason explains --now: give --now too, or leave --reason out")
		}
		return nil
	}
	apiRun(cmd, stdio, check, func(cmd *cobra.Command, _ []string, c *client.Client) error {
		resp, err := c.Upgrade(cmd.Context(), protocol.UpgradeRequest{Site: site, Client: clientName, Product: product, To: to, Now: now, Reason: reason,
			AcceptDrift: acceptDrift, AllowDowngrade: allowDowngrade, AllowIrreversible: allowIrreversible, Force: force})
		if err != nil {
			return err
		}
		printUpgrade(stdio.Stdout, resp, to)
		return nil
	})
	return cmd
}

// printUpgrade says what an upgrade did to each site: its jobs, queued
// until an offline site checks in, or nothing for a site already on the
// version.
func printUpgrade(w io.Writer, resp protocol.UpgradeResponse, to string) {
	if len(resp.Jobs) == 0 && len(resp.Done) <= 1 {
		fmt.Fprintf(w, "nothing to do: already on %s\n", to)
		return
	}
	for _, j := range resp.Jobs {
		from := j.From
		if from == "" {
			from = "(nothing)"
		}
		state := j.Result
		if slices.Contains(resp.Offline, j.Site) {
			state += ": the site is offline; the job waits until it checks in"
		}
		fmt.Fprintf(w, "%s: %s %s -> %s (%s)\n", j.Site, j.ID, from, j.To, state)
	}
	for _, s := range resp.Done {
		fmt.Fprintf(w, "%s: already on %s, nothing to do\n", s, to)
	}
}

func newHistoryCmd(stdio IO) *cobra.Command {
	var site, before string
	var limit int
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "history --site S [--limit N] [--before JOB_ID] [--json]",
		Short: "A site's jobs, newest first, with their events",
		Long: `A site's jobs, newest first, with their events: the newest --limit jobs,
or with --before JOB_ID the ones older than that job (the text output
ends with the command that shows the next page).`,
		Args: noArgs,
	}
	cmd.Flags().StringVar(&site, "site", "", "the site")
	cmd.Flags().IntVar(&limit, "limit", fleet.DefaultHistoryLimit, fmt.Sprintf("how many jobs to show (at most %d)", fleet.MaxHistoryLimit))
	cmd.Flags().StringVar(&before, "before", "", "show the jobs older than this job")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	check := func(cmd *cobra.Command, _ []string) error {
		if err := required(cmd, "site"); err != nil {
			return err
		}
		if limit < 1 || limit > fleet.MaxHistoryLimit {
			return usagef("--limit %d: give a number from 1 to %d", limit, fleet.MaxHistoryLimit)
		}
		return nil
	}
	apiRun(cmd, stdio, check, func(cmd *cobra.Command, _ []string, c *client.Client) error {
		jobs, next, err := c.History(cmd.Context(), site, before, limit)
		if err != nil {
			return err
		}
		if asJSON {
			return printJSON(stdio.Stdout, jobs)
		}
		if len(jobs) == 0 {
			if before != "" {
				fmt.Fprintf(stdio.Stdout, "%s has no jobs older than %s\n", site, before)
			} else {
				fmt.Fprintf(stdio.Stdout, "%s has no jobs yet\n", site)
			}
		}
		for i, j := range jobs {
			if i > 0 {
				fmt.Fprintln(stdio.Stdout)
			}
			printJob(stdio.Stdout, j)
		}
		if next != "" {
			fmt.Fprintf(stdio.Stdout, "\nolder jobs: updateserver history --site %s --before %s\n", site, next)
		}
		return nil
	})
	return cmd
}
