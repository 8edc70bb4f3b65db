package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/dropless/dropless/pkg/atomicfile"
	"github.com/dropless/dropless/updateserver/internal/daemon"
	"github.com/dropless/dropless/updateserver/internal/tufrepo"
)

const defaultDataDir = "./updateserver-data"

type serverFlags struct {
	data, store, listen, maxBundle, logFormat string
	tlsCert, tlsKey                           string
	expiry                                    tufrepo.Expiry
	refresh, poll, jobTimeout                 time.Duration
	metricsPublic                             bool
}

func (f *serverFlags) register(cmd *cobra.Command, listen bool) {
	fs := cmd.Flags()
	fs.StringVar(&f.data, "data", defaultDataDir, "data directory (created and initialised on first start)")
	fs.StringVar(&f.store, "store", "", "where the server keeps its state: a postgres://user:password@host:5432/db URL, or empty for the embedded SQLite in --data")
	if listen {
		fs.StringVar(&f.listen, "listen", "127.0.0.1:8080", "address to listen on")
		fs.StringVar(&f.maxBundle, "max-bundle-size", humanize.IBytes(daemon.DefaultMaxBundleSize), "largest bundle accepted (e.g. 16GiB, 500MB)")
		fs.DurationVar(&f.refresh, "refresh-interval", time.Minute, "how often to check whether metadata needs re-signing")
		fs.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
		fs.DurationVar(&f.poll, "poll-interval", daemon.DefaultPollInterval, "how often idle agents check in (they also long-poll)")
		fs.DurationVar(&f.jobTimeout, "job-timeout", daemon.DefaultJobTimeout, "fail a job without progress for this long")
		fs.StringVar(&f.tlsCert, "tls-cert", "", "PEM certificate (chain) to serve HTTPS only with; read again when it changes (with --tls-key)")
		fs.StringVar(&f.tlsKey, "tls-key", "", "PEM private key of --tls-cert")
		fs.BoolVar(&f.metricsPublic, "metrics-public", false, "serve /metrics to anyone; without it a scrape needs an operator token (any role)")
	}
	def := tufrepo.DefaultExpiry()
	fs.DurationVar(&f.expiry.Timestamp, "timestamp-expiry", def.Timestamp, "lifetime of timestamp metadata (re-signed before it runs out)")
	fs.DurationVar(&f.expiry.Snapshot, "snapshot-expiry", def.Snapshot, "lifetime of snapshot metadata")
	fs.DurationVar(&f.expiry.Targets, "targets-expiry", def.Targets, "lifetime of targets metadata signed by the server")
	fs.DurationVar(&f.expiry.Root, "root-expiry", def.Root, "lifetime of the initial root metadata")
}

func (f *serverFlags) config(stdio IO) (daemon.Config, error) {
	cfg := daemon.Config{DataDir: f.data, Store: f.store, Listen: f.listen, Expiry: f.expiry, RefreshInterval: f.refresh, MaxBundleSize: daemon.DefaultMaxBundleSize}
	cfg.PollInterval, cfg.JobTimeout = f.poll, f.jobTimeout
	cfg.TLSCert, cfg.TLSKey = f.tlsCert, f.tlsKey
	cfg.MetricsPublic = f.metricsPublic
	if cfg.RefreshInterval == 0 {
		cfg.RefreshInterval = time.Minute
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = daemon.DefaultPollInterval
	}
	if cfg.JobTimeout == 0 {
		cfg.JobTimeout = daemon.DefaultJobTimeout
	}
	if f.maxBundle != "" {
		n, err := humanize.ParseBytes(f.maxBundle)
		if err != nil || n == 0 {
			return cfg, usagef("--max-bundle-size %q is not a size: write it like 16GiB or 500MB", f.maxBundle)
		}
		cfg.MaxBundleSize = int64(n)
	}
	var h slog.Handler
	switch f.logFormat {
	case "", "text":
		h = slog.NewTextHandler(stdio.Stderr, nil)
	case "json":
		h = slog.NewJSONHandler(stdio.Stderr, nil)
	default:
		return cfg, usagef("--log-format %q: use text or json", f.logFormat)
	}
	cfg.Log = slog.New(h)
	if err := cfg.Validate(); err != nil {
		return cfg, usageError{err}
	}
	return cfg, nil
}

// open opens the data directory the flags name (initialising it when
// empty).
func (f *serverFlags) open(ctx context.Context, stdio IO) (*daemon.Daemon, error) {
	cfg, err := f.config(stdio)
	if err != nil {
		return nil, err
	}
	return daemon.Open(ctx, cfg)
}

func newServeCmd(stdio IO) *cobra.Command {
	var f serverFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the update server until SIGINT or SIGTERM",
		Long: `Run the update server. On first start in an empty data directory it
initialises everything: the store, a TUF repository with fresh keys,
DIR/root.json (what agents pin) and an admin token in DIR/admin.token.

The store is SQLite in DIR unless --store names a PostgreSQL database
(postgres://user:password@host:5432/db?sslmode=disable; the database must
exist, the server creates and migrates its tables).

With --tls-cert and --tls-key it serves HTTPS only (TLS 1.2 or later). The
files are read again when they change (checked every few seconds), so a
renewed certificate needs no restart; a new pair that does not load is
logged and the previous certificate kept.

One process uses a data directory: a second serve (or init) on it is
refused while the first runs.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := f.open(cmd.Context(), stdio)
			if err != nil {
				return err
			}
			defer d.Close()
			return d.Serve(cmd.Context())
		},
	}
	f.register(cmd, true)
	return cmd
}

func newInitCmd(stdio IO) *cobra.Command {
	var f serverFlags
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Initialise a data directory without serving (serve does this on first start)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := f.open(cmd.Context(), stdio)
			if err != nil {
				return err
			}
			d.Close()
			sum, err := daemon.RootSHA256(f.data)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdio.Stdout, "data directory: %s\nroot.json sha256: %s\nadmin token: %s\n",
				f.data, sum, filepath.Join(f.data, daemon.AdminTokenFile))
			return nil
		},
	}
	f.register(cmd, false)
	f.logFormat = "text"
	return cmd
}

func newRootCmd(stdio IO) *cobra.Command {
	var data string
	sha := &cobra.Command{
		Use:   "sha256",
		Short: "Print the sha256 of DIR/root.json: the value agents pin as root_sha256",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			sum, err := daemon.RootSHA256(data)
			if os.IsNotExist(err) {
				return fmt.Errorf("%s has no root.json: start the server once (updateserver serve --data %s) or run updateserver init", data, data)
			}
			if err != nil {
				return err
			}
			fmt.Fprintln(stdio.Stdout, sum)
			return nil
		},
	}
	sha.Flags().StringVar(&data, "data", defaultDataDir, "data directory")
	return group("root", "The repository's root metadata", sha)
}

func newKeyCmd(stdio IO) *cobra.Command {
	var data, role, out string
	var remove bool
	export := &cobra.Command{
		Use:   "export",
		Short: "Copy a role's private key out of the data directory (and remove it with --remove)",
		Long: `Copy a role's private key out of the data directory, to keep it offline.

Move the targets key to the release team's machine:
  updateserver key export --data DIR --role targets --out targets.pem --remove
then publish with: updateserver release publish --sign-key targets.pem ...
From then on this server cannot sign releases: a stolen server cannot make
agents install anything the release team did not sign.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := required(cmd, "role", "out"); err != nil {
				return err
			}
			if role != tufrepo.RoleTargets && role != tufrepo.RoleRoot {
				return usagef("--role %q: only the targets and root keys can be taken offline (snapshot and timestamp are signed online)", role)
			}
			ks := tufrepo.KeyStore{Dir: filepath.Join(data, daemon.KeysDir)}
			src := ks.Path(role)
			b, err := os.ReadFile(src)
			if os.IsNotExist(err) {
				return fmt.Errorf("%s holds no %s key: it is already offline", data, role)
			}
			if err != nil {
				return err
			}
			if _, err := tufrepo.ParseSigner(b); err != nil {
				return fmt.Errorf("%s: %w", src, err)
			}
			if _, err := os.Stat(out); err == nil {
				return fmt.Errorf("%s already exists: choose another --out", out)
			}
			if err := atomicfile.WriteFile(out, b, 0o600); err != nil {
				return err
			}
			fmt.Fprintf(stdio.Stdout, "%s key written to %s\n", role, out)
			if remove {
				if err := os.Remove(src); err != nil {
					return err
				}
				if err := atomicfile.SyncDir(filepath.Dir(src)); err != nil {
					return err
				}
				fmt.Fprintf(stdio.Stdout, "%s key removed from %s: keep %s safe, it is the only copy\n", role, data, out)
			}
			return nil
		},
	}
	export.Flags().StringVar(&data, "data", defaultDataDir, "data directory")
	export.Flags().StringVar(&role, "role", "", "targets or root")
	export.Flags().StringVar(&out, "out", "", "file to write the PEM private key to (mode 0600)")
	export.Flags().BoolVar(&remove, "remove", false, "remove the key from the data directory after copying it")

	var listData string
	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "Show which role keys this data directory holds",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ks := tufrepo.KeyStore{Dir: filepath.Join(listData, daemon.KeysDir)}
			type row struct {
				Role   string `json:"role"`
				Online bool   `json:"online"`
			}
			var rows []row
			var trows [][]string
			for _, r := range tufrepo.TopLevelRoles {
				rows = append(rows, row{r, ks.Has(r)})
				state := "offline"
				if ks.Has(r) {
					state = "on this server"
				}
				trows = append(trows, []string{r, state})
			}
			if asJSON {
				return printJSON(stdio.Stdout, rows)
			}
			return table(stdio.Stdout, []string{"ROLE", "KEY"}, trows)
		},
	}
	list.Flags().StringVar(&listData, "data", defaultDataDir, "data directory")
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return group("key", "The repository's signing keys", export, list)
}
