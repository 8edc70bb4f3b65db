package cli

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/pkg/versions"
	"github.com/dropless/dropless/updateserver/internal/client"
)

func newShowCmd(stdio IO) *cobra.Command {
	var product, version string
	cmd := &cobra.Command{
		Use:   "show --product P --version V [--json]",
		Short: "Show one release: channels, notes, upgrade_from, sha256, length, yanked and why, published when and by whom",
		Args:  noArgs,
	}
	productVersionFlags(cmd, &product, &version)
	showRun(cmd, stdio, requireFlags("product", "version"), func(ctx context.Context, c *client.Client, _ []string) (protocol.Release, error) {
		return c.Release(ctx, product, version)
	}, func(r protocol.Release) error {
		state := "available"
		if r.Yanked {
			state = "yanked: " + orDash(r.YankReason)
		}
		w := stdio.Stdout
		fmt.Fprintf(w, "%s %s\n", r.Product, r.Version)
		fmt.Fprintf(w, "  channels:      %s\n", orDash(strings.Join(r.Channels, ", ")))
		fmt.Fprintf(w, "  upgrade from:  %s\n", orDash(r.UpgradeFrom))
		fmt.Fprintf(w, "  target:        %s\n", r.Target)
		fmt.Fprintf(w, "  sha256:        %s\n", r.SHA256)
		fmt.Fprintf(w, "  length:        %d (%s)\n", r.Length, humanize.IBytes(uint64(r.Length)))
		fmt.Fprintf(w, "  state:         %s\n", state)
		fmt.Fprintf(w, "  published:     %s by %s\n", ago(r.PublishedAt), r.PublishedBy)
		if r.Notes != "" {
			fmt.Fprintf(w, "\n%s\n", strings.TrimRight(r.Notes, "\n"))
		}
		return nil
	})
	return cmd
}

func newNotesCmd(stdio IO) *cobra.Command {
	var product, from, to string
	cmd := &cobra.Command{
		Use:   "notes --product P --from A --to B [--json]",
		Short: "The notes of every release after A up to B, newest first: what an upgrade from A to B brings",
		Args:  noArgs,
	}
	cmd.Flags().StringVar(&product, "product", "", "product")
	cmd.Flags().StringVar(&from, "from", "", "the version a site runs now (not included)")
	cmd.Flags().StringVar(&to, "to", "", "the version it would upgrade to (included)")
	check := func(cmd *cobra.Command, _ []string) error {
		if err := required(cmd, "product", "from", "to"); err != nil {
			return err
		}
		for flag, v := range map[string]string{"from": from, "to": to} {
			if _, err := versions.Parse(v); err != nil {
				return usagef("--%s %q: %v", flag, v, err)
			}
		}
		if versions.Compare(from, to) >= 0 {
			return usagef("--from %s is not older than --to %s: give the installed version as --from and the newer one as --to", from, to)
		}
		return nil
	}
	showRun(cmd, stdio, check, func(ctx context.Context, c *client.Client, _ []string) ([]protocol.Release, error) {
		all, err := c.Releases(ctx, product, "")
		if err != nil {
			return nil, err
		}
		if !slices.ContainsFunc(all, func(r protocol.Release) bool { return versions.Equal(r.Version, to) }) {
			return nil, fmt.Errorf("%s %s is not published: see release list --product %s", product, to, product)
		}
		return releasesBetween(all, from, to), nil
	}, func(sel []protocol.Release) error {
		for i, r := range sel {
			if i > 0 {
				fmt.Fprintln(stdio.Stdout)
			}
			head := fmt.Sprintf("%s %s (%s)", r.Product, r.Version, ago(r.PublishedAt))
			if r.Yanked {
				head += " - yanked: " + orDash(r.YankReason)
			}
			fmt.Fprintf(stdio.Stdout, "%s\n%s\n", head, orDash(strings.TrimRight(r.Notes, "\n")))
		}
		return nil
	})
	return cmd
}

// releasesBetween returns the releases after from up to and including to,
// newest first.
func releasesBetween(all []protocol.Release, from, to string) []protocol.Release {
	out := []protocol.Release{}
	for _, r := range all {
		if versions.Compare(r.Version, from) > 0 && versions.Compare(r.Version, to) <= 0 {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b protocol.Release) int { return versions.Compare(b.Version, a.Version) })
	return out
}
