package cli

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/client"
	"github.com/dropless/dropless/updateserver/internal/fleet"
)

func newRolloutCmd(stdio IO) *cobra.Command {
	var req protocol.RolloutRequest
	var waves string
	var soak time.Duration
	create := &cobra.Command{
		Use:   "create --product P --version V (--channel C | --client C... | --site S...) [--canary SITE...] [--waves 5%,25%,100%] [--max-parallel N] [--max-failures N|N%] [--soak DURATION] [--hold-between-waves]",
		Short: "Upgrade many sites to a release in waves, pausing itself when failures pile up",
		Long: `Create a rollout of a release over the sites of a channel, of clients, or
named sites, and print its ID. The --canary sites go first, as a wave of
their own (wave 0); then the waves, cumulative percentages of all the
rollout's sites (--waves 5%,25%,100%; default 100%). A wave starts when the
one before has ended and --soak has passed; with --hold-between-waves the
rollout pauses after each wave until someone runs rollout resume. At most
--max-parallel sites upgrade at once (default 10), each only inside its
maintenance window and outside freezes; multi-hop upgrade paths apply per
site; a site on the version already counts as done.

A job that fails, rolls back or times out (also a site that never picks up
its job) is a failure. When the failures reach --max-failures (a count, or
a percentage of the sites started; default 1) the rollout pauses itself:
no new site starts, running jobs finish, and rollout show says why and
which sites failed. A site is in one running or paused rollout of a
product at a time.`,
		Args: noArgs,
	}
	fl := create.Flags()
	productVersionFlags(create, &req.Product, &req.Version)
	fl.StringVar(&req.Channel, "channel", "", "the sites that follow this channel")
	fl.StringSliceVar(&req.Clients, "client", nil, "every site of these clients (repeatable, or comma-separated)")
	fl.StringSliceVar(&req.Sites, "site", nil, "these sites (repeatable, or comma-separated)")
	fl.StringSliceVar(&req.Canary, "canary", nil, "sites that go first, as wave 0 (repeatable, or comma-separated)")
	fl.StringVar(&waves, "waves", "100%", "cumulative percentages of all the rollout's sites, e.g. 5%,25%,100%")
	fl.IntVar(&req.MaxParallel, "max-parallel", fleet.DefaultMaxParallel, "at most this many sites upgrade at once")
	fl.StringVar(&req.MaxFailures, "max-failures", fleet.DefaultMaxFailures, "pause at this many failures, or this percentage of the sites started (10%)")
	fl.DurationVar(&soak, "soak", 0, "wait this long after a wave ended before the next starts (e.g. 30m)")
	fl.BoolVar(&req.HoldBetweenWaves, "hold-between-waves", false, "pause after each wave until someone resumes")
	check := func(cmd *cobra.Command, _ []string) error {
		if err := required(cmd, "product", "version"); err != nil {
			return err
		}
		n := 0
		for _, f := range []string{"channel", "client", "site"} {
			if cmd.Flags().Changed(f) {
				n++
			}
		}
		if n != 1 {
			return usagef("give the rollout's sites with exactly one of --channel, --client or --site")
		}
		var err error
		if req.Waves, err = fleet.ParseWaves(waves); err != nil {
			return usageError{err}
		}
		if req.MaxParallel < 1 {
			return usagef("--max-parallel %d: give how many sites may upgrade at once (at least 1)", req.MaxParallel)
		}
		if _, err := fleet.ParseMaxFailures(req.MaxFailures); err != nil {
			return usageError{err}
		}
		if soak < 0 || soak%time.Second != 0 {
			return usagef("--soak %s: give a whole number of seconds or more, e.g. 30m", soak)
		}
		req.SoakSeconds = int64(soak / time.Second)
		return nil
	}
	apiRun(create, stdio, check, func(cmd *cobra.Command, _ []string, c *client.Client) error {
		ro, err := c.CreateRollout(cmd.Context(), req)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdio.Stdout, "%d\n", ro.ID)
		return nil
	})

	list := &cobra.Command{
		Use:   "list [--json]",
		Short: "List rollouts, newest first",
		Args:  noArgs,
	}
	showRun(list, stdio, nil, func(ctx context.Context, c *client.Client, _ []string) ([]protocol.Rollout, error) {
		return c.Rollouts(ctx)
	}, func(ros []protocol.Rollout) error {
		rows := make([][]string, 0, len(ros))
		for _, ro := range ros {
			rows = append(rows, []string{strconv.FormatInt(ro.ID, 10), ro.Product, ro.Version, ro.State, strconv.Itoa(ro.CurrentWave),
				strconv.Itoa(ro.Sites), strconv.Itoa(ro.Started), strconv.Itoa(ro.Failures), ro.CreatedAt.Format(time.RFC3339), ro.CreatedBy})
		}
		return table(stdio.Stdout, []string{"ID", "PRODUCT", "VERSION", "STATE", "WAVE", "SITES", "STARTED", "FAILURES", "CREATED", "BY"}, rows)
	})

	var id int64
	idCheck := func(_ *cobra.Command, args []string) error {
		var err error
		if id, err = strconv.ParseInt(args[0], 10, 64); err != nil || id <= 0 {
			return usagef("rollout ID %q is not a number: see rollout list", args[0])
		}
		return nil
	}
	show := &cobra.Command{
		Use:   "show ID [--json]",
		Short: "Show a rollout: its state, why it paused, and each wave's sites",
		Args:  exactArgs(1, "the rollout ID (see rollout list)"),
	}
	showRun(show, stdio, idCheck, func(ctx context.Context, c *client.Client, _ []string) (protocol.Rollout, error) {
		return c.Rollout(ctx, id)
	}, func(ro protocol.Rollout) error { return renderRollout(stdio, ro) })

	actions := []struct{ verb, done, short string }{
		{"pause", "paused", "Pause a rollout: no new site starts; running jobs finish"},
		{"resume", "resumed", "Resume a paused rollout where it was (its failures still counted)"},
		{"cancel", "cancelled", "Cancel a rollout: jobs not started are cancelled at once, running ones finish"},
	}
	cmds := []*cobra.Command{create, list, show}
	for _, a := range actions {
		cmd := &cobra.Command{Use: a.verb + " ID", Short: a.short, Args: exactArgs(1, "the rollout ID (see rollout list)")}
		idRun(cmd, stdio, "rollout ID %q is not a number: see rollout list", "rollout %d "+a.done,
			func(c *client.Client, ctx context.Context, id int64) error {
				_, err := c.RolloutAction(ctx, id, a.verb)
				return err
			})
		cmds = append(cmds, cmd)
	}
	return group("rollout", "Rollouts: one release to many sites in waves, with an andon cord", cmds...)
}

func renderRollout(stdio IO, ro protocol.Rollout) error {
	w := stdio.Stdout
	fmt.Fprintf(w, "rollout %d: %s %s, %s\n", ro.ID, ro.Product, ro.Version, ro.State)
	if ro.PauseReason != "" {
		fmt.Fprintf(w, "paused: %s\n", ro.PauseReason)
	}
	waves := make([]string, len(ro.Waves))
	for i, p := range ro.Waves {
		waves[i] = strconv.FormatFloat(p, 'f', -1, 64) + "%"
	}
	canary := ""
	if ro.Canary {
		canary = " after the canary wave"
	}
	fmt.Fprintf(w, "waves %s%s, max parallel %d, max failures %s, soak %s, hold between waves %t\n",
		strings.Join(waves, ","), canary, ro.MaxParallel, ro.MaxFailures, time.Duration(ro.SoakSeconds)*time.Second, ro.HoldBetweenWaves)
	fmt.Fprintf(w, "wave %d; %d sites, %d started, %d failed", ro.CurrentWave, ro.Sites, ro.Started, ro.Failures)
	if len(ro.FailedSites) > 0 {
		fmt.Fprintf(w, ": %s", strings.Join(ro.FailedSites, ", "))
	}
	fmt.Fprintln(w)
	if ro.NextWaveAt != nil && ro.NextWaveAt.After(time.Now()) {
		fmt.Fprintf(w, "wave %d starts at %s (soak)\n", ro.CurrentWave, ro.NextWaveAt.Format(time.RFC3339))
	}
	fmt.Fprintln(w)
	var rows, sites [][]string
	for _, wv := range ro.WaveDetail {
		name := strconv.Itoa(wv.Wave)
		if wv.Canary {
			name += " (canary)"
		}
		rows = append(rows, []string{name, strconv.Itoa(len(wv.Sites)), strconv.Itoa(wv.Waiting), strconv.Itoa(wv.Pending), strconv.Itoa(wv.Running),
			strconv.Itoa(wv.Succeeded), strconv.Itoa(wv.Failed), strconv.Itoa(wv.Cancelled)})
		for _, s := range wv.Sites {
			sites = append(sites, []string{strconv.Itoa(wv.Wave), s.Site, s.Status, orDash(s.JobID), orDash(s.Reason)})
		}
	}
	if err := table(w, []string{"WAVE", "SITES", "WAITING", "PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"}, rows); err != nil {
		return err
	}
	fmt.Fprintln(w)
	return table(w, []string{"WAVE", "SITE", "STATUS", "JOB", "REASON"}, sites)
}
