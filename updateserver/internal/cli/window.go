package cli

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/client"
	"github.com/dropless/dropless/updateserver/internal/schedule"
)

func newWindowCmd(stdio IO) *cobra.Command {
	var site, clientName, tz string
	var weekly []string
	set := &cobra.Command{
		Use:   `set (--site S | --client C) --weekly "Sat 22:00-Sun 04:00" [--weekly ...] [--tz ZONE]`,
		Short: "Set the maintenance window of a site or of every site of a client",
		Long: `Set when jobs may start: one or more weekly ranges in an IANA time zone
(default UTC), e.g. --weekly "Sat 22:00-Sun 04:00" (a range may cross
midnight and the week's end) or --weekly "Mon-Fri 01:00-05:00" (each of
those nights). A site's own window wins over its client's. A job waits
for the window (and for the end of any freeze) unless made with upgrade
--now; a job that has started runs to its end when the window closes.
Daylight saving follows the site's clock: a range is open while the clock
shows a time inside it.`,
		Args: noArgs,
	}
	set.Flags().StringVar(&site, "site", "", "the site")
	set.Flags().StringVar(&clientName, "client", "", "every site of this client (a site's own window wins)")
	set.Flags().StringArrayVar(&weekly, "weekly", nil, `a weekly range, e.g. "Sat 22:00-Sun 04:00" (repeatable)`)
	set.Flags().StringVar(&tz, "tz", "UTC", "the IANA time zone of the ranges, e.g. Europe/Berlin")
	setCheck := func(cmd *cobra.Command, _ []string) error {
		if (site == "") == (clientName == "") {
			return usagef("give exactly one of --site or --client")
		}
		if err := required(cmd, "weekly"); err != nil {
			return err
		}
		// Checked here too, so a typo is a usage error before any request.
		if _, err := schedule.Parse(weekly, tz); err != nil {
			return usageError{err}
		}
		return nil
	}
	apiRun(set, stdio, setCheck, func(cmd *cobra.Command, _ []string, c *client.Client) error {
		w, err := c.SetWindow(cmd.Context(), protocol.WindowRequest{Site: site, Client: clientName, Weekly: weekly, TZ: tz})
		if err != nil {
			return err
		}
		who := "site " + w.Site
		if w.Client != "" {
			who = "client " + w.Client
		}
		fmt.Fprintf(stdio.Stdout, "window of %s: %s (%s)\n", who, strings.Join(w.Weekly, ", "), w.TZ)
		return nil
	})

	var clearSite, clearClient string
	clear := &cobra.Command{
		Use:   "clear (--site S | --client C)",
		Short: "Remove the window of a site or a client (its sites are then always open, or follow the client's)",
		Args:  noArgs,
	}
	clear.Flags().StringVar(&clearSite, "site", "", "the site")
	clear.Flags().StringVar(&clearClient, "client", "", "the client")
	check := func(*cobra.Command, []string) error {
		if (clearSite == "") == (clearClient == "") {
			return usagef("give exactly one of --site or --client")
		}
		return nil
	}
	apiRun(clear, stdio, check, func(cmd *cobra.Command, _ []string, c *client.Client) error {
		if err := c.ClearWindow(cmd.Context(), clearSite, clearClient); err != nil {
			return err
		}
		fmt.Fprintln(stdio.Stdout, "window cleared")
		return nil
	})

	var showSite string
	show := &cobra.Command{
		Use:   "show --site S [--json]",
		Short: "Show a site's window: its ranges and zone, open now or not, the next opening",
		Args:  noArgs,
	}
	show.Flags().StringVar(&showSite, "site", "", "the site")
	showRun(show, stdio, requireFlags("site"), func(ctx context.Context, c *client.Client, _ []string) (protocol.SiteWindow, error) {
		return c.SiteWindow(ctx, showSite)
	}, func(sw protocol.SiteWindow) error {
		w := stdio.Stdout
		if sw.Window == nil {
			fmt.Fprintf(w, "site:     %s\nwindow:   none: always open (set one with window set --site %s or --client %s)\n", sw.Site, sw.Site, sw.Client)
		} else {
			from := "its own"
			if sw.Window.Client != "" {
				from = "client " + sw.Window.Client + "'s"
			}
			fmt.Fprintf(w, "site:     %s\nwindow:   %s (%s)\nzone:     %s\n", sw.Site, strings.Join(sw.Window.Weekly, ", "), from, sw.Window.TZ)
			switch {
			case sw.Open && sw.NextClose != nil:
				fmt.Fprintf(w, "now:      open, closes %s\n", sw.NextClose.UTC().Format(time.RFC3339))
			case sw.Open:
				fmt.Fprintf(w, "now:      open\n")
			case sw.NextOpen != nil:
				fmt.Fprintf(w, "now:      closed\nopens:    %s (site time)\n          %s (UTC)\n", sw.NextOpenLocal, sw.NextOpen.UTC().Format(time.RFC3339))
			default:
				fmt.Fprintf(w, "now:      closed, and it does not open within a week: check the ranges\n")
			}
		}
		for _, f := range sw.Freezes {
			fmt.Fprintf(w, "freeze:   %d  %s to %s  %s\n", f.ID, f.From.Format(time.RFC3339), f.To.Format(time.RFC3339), f.Reason)
		}
		if !sw.MayStart {
			fmt.Fprintf(w, "jobs:     wait: %s\n", sw.WaitReason)
		}
		return nil
	})
	return group("window", "Maintenance windows: when a site's jobs may start", set, clear, show)
}
