package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/dropless/dropless/pkg/airgap"
	"github.com/dropless/dropless/pkg/atomicfile"
	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/pkg/versions"
	"github.com/dropless/dropless/updateserver/internal/client"
	"github.com/dropless/dropless/updateserver/internal/fleet"
	"github.com/dropless/dropless/updateserver/internal/mirror"
)

type offlineExportFlags struct {
	product, version, from, out string
	force                       bool
}

func newOfflineCmd(stdio IO) *cobra.Command {
	var f offlineExportFlags
	export := &cobra.Command{
		Use:   "export --product P --version V [--from VERSION] --out FILE",
		Short: "Write an air-gap file: TUF metadata and the bundles to reach a version",
		Long: `Write an air-gap file for a site with no network path to this server:
the repository's TUF metadata (every root version from 1, timestamp, snapshot
and targets) and the bundle of version V. With --from, the site's installed
version, the file also holds the bundles of the intermediate releases the
upgrade needs (the same path planning as updateserver upgrade: never a
yanked release on the way).

Client IT copies the file to the site and runs
  updateagent apply-offline --config /etc/updateagent/agent.toml --report report.json FILE
which verifies everything against the root the agent pins. The file's
metadata expires with the repository's timestamp (a day by default): apply
it before then, or export it again.`,
		Args: noArgs,
	}
	api := withAPI(export, stdio)
	fs := export.Flags()
	fs.StringVar(&f.product, "product", "", "product, e.g. acme-erp")
	fs.StringVar(&f.version, "version", "", "the version to upgrade to")
	fs.StringVar(&f.from, "from", "", "the site's installed version: add the intermediate releases the upgrade needs")
	fs.StringVar(&f.out, "out", "", "the air-gap file to write")
	fs.BoolVar(&f.force, "force", false, "export a yanked version anyway")
	export.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := required(cmd, "product", "version", "out"); err != nil {
			return err
		}
		c, err := api.client()
		if err != nil {
			return err
		}
		return runOfflineExport(cmd.Context(), stdio, c, api.server, f)
	}
	return group("offline", "Air-gapped sites: files carried in by hand", export)
}

func runOfflineExport(ctx context.Context, stdio IO, c *client.Client, server string, f offlineExportFlags) error {
	rels, err := c.Releases(ctx, f.product, "")
	if err != nil {
		return err
	}
	var target *protocol.Release
	for i := range rels {
		if versions.Equal(rels[i].Version, f.version) {
			target = &rels[i]
		}
	}
	if target == nil {
		return fmt.Errorf("%s %s is not published: see updateserver release list --product %s", f.product, f.version, f.product)
	}
	if target.Yanked && !f.force {
		return fmt.Errorf("%s %s is yanked (%s): it is never offered again; export it with --force to install it anyway", f.product, target.Version, orDash(target.YankReason))
	}
	path := []protocol.Release{*target}
	if f.from != "" {
		if _, err := versions.Parse(f.from); err != nil {
			return usagef("--from %q is not a version: %v", f.from, err)
		}
		if path, err = fleet.PlanPath(rels, f.from, *target, false); err != nil {
			return err
		}
		if len(path) == 0 {
			return fmt.Errorf("--from %s is already %s %s: nothing to export", f.from, f.product, target.Version)
		}
	}
	m := airgap.Manifest{Product: f.product, Version: target.Version, From: f.from, Created: time.Now().UTC(), Server: server}
	var targets []string
	var bundles int64
	for _, r := range path {
		m.Hops = append(m.Hops, airgap.Hop{Version: r.Version, Target: r.Target, Length: r.Length})
		targets = append(targets, r.Target)
		bundles += r.Length
	}
	tmp, err := os.MkdirTemp("", "airgap-export-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	get := func(ctx context.Context, p string) (*http.Response, error) { return c.Get(ctx, "/tuf/"+p) }
	res, err := mirror.ExportTargets(ctx, get, tmp, targets)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	var size int64
	err = atomicfile.Write(f.out, 0o644, func(w io.Writer) error {
		cw := &countWriter{w: w}
		err := airgap.Write(cw, tmp, m)
		size = cw.n
		return err
	})
	if err != nil {
		return fmt.Errorf("write %s: %w", f.out, err)
	}
	hops := make([]string, len(path))
	for i, r := range path {
		hops[i] = r.Version
	}
	from := ""
	if f.from != "" {
		from = " from " + f.from
	}
	fmt.Fprintf(stdio.Stdout, "wrote %s: %s %s%s (hops %s), root versions 1..%d; %s, of which bundles %s (%d bytes of metadata and tar framing)\n",
		f.out, f.product, target.Version, from, strings.Join(hops, " -> "), res.RootVersions,
		humanize.IBytes(uint64(size)), humanize.IBytes(uint64(bundles)), size-bundles)
	return nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func newImportReportCmd(stdio IO) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "import-report FILE [--json]",
		Short: "Import the job report an air-gapped agent wrote (apply-offline --report) into its site's history",
		Long: `Import the report that updateagent apply-offline --report wrote on an
air-gapped site: its jobs and their events join the site's history, and the
site's installed version becomes the one the report says (unless the site
checked in since). The report is signed with the site's agent credential:
a report that was changed, or that names another site than the agent's,
is refused. Importing the same report again adds nothing.`,
		Args: exactArgs(1, "the report FILE"),
	}
	api := withAPI(cmd, stdio)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := api.client()
		if err != nil {
			return err
		}
		b, err := os.ReadFile(args[0])
		if err != nil {
			return fmt.Errorf("read the report: %w", err)
		}
		if !json.Valid(b) || len(b) > airgap.MaxReportBytes {
			return fmt.Errorf("%s is not a report: give the file updateagent apply-offline --report wrote", args[0])
		}
		resp, err := c.ImportReport(cmd.Context(), b)
		if err != nil {
			return err
		}
		if asJSON {
			return printJSON(stdio.Stdout, resp)
		}
		fmt.Fprintf(stdio.Stdout, "imported into %s: %d jobs (%d new), %d new events; installed: %s\n",
			resp.Site, len(resp.Jobs), resp.New, resp.Events, orDash(resp.InstalledVersion))
		return nil
	}
	return cmd
}
