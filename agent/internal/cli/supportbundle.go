package cli

import (
	"bytes"
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/dropless/dropless/agent/internal/config"
	"github.com/dropless/dropless/agent/internal/engine"
	"github.com/dropless/dropless/agent/internal/runner"
	"github.com/dropless/dropless/agent/internal/support"
	"github.com/dropless/dropless/pkg/atomicfile"
)

func newSupportBundleCmd(stdio IO) *cobra.Command {
	var cfgPath, out, name string
	cmd := &cobra.Command{
		Use:   "support-bundle --config FILE --out FILE",
		Short: "Write a .tar.gz for the vendor's support: config (secrets redacted), status, recent logs, the last jobs, drift, disk and OS facts",
		Long: `Write a .tar.gz for the vendor's support: the agent's config with its
secrets redacted, its status, its recent logs, the journal of its last jobs,
the drift report, and disk and OS facts. It only reads: it works while the
agent service runs, with the server unreachable, and with a config that does
not load. The file is written with mode 0600.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfgPath == "" {
				return usagef("--config FILE is required")
			}
			if out == "" {
				return usagef("--out FILE is required (e.g. --out support.tar.gz)")
			}
			abs, err := filepath.Abs(cfgPath)
			if err != nil {
				return err
			}
			opts := support.Options{ConfigPath: abs, ServiceName: name, Status: statusJSONOf}
			var buf bytes.Buffer
			sum, err := support.Write(cmd.Context(), &buf, opts)
			if err != nil {
				return err
			}
			if err := atomicfile.WriteFile(out, buf.Bytes(), 0o600); err != nil {
				return fmt.Errorf("write %s: %w", out, err)
			}
			fmt.Fprintf(stdio.Stdout, "wrote %s (%d bytes, %d files)\n", out, buf.Len(), len(sum.Files))
			for _, m := range sum.Missing {
				fmt.Fprintf(stdio.Stderr, "not collected: %s\n", m)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", defaultConfigPath(), "agent config file (TOML)")
	cmd.Flags().StringVar(&out, "out", "", "the .tar.gz to write")
	cmd.Flags().StringVar(&name, "name", DefaultServiceName, "service name (whose logs are collected)")
	return cmd
}

// statusJSONOf is what `status --json` prints for cfg.
func statusJSONOf(cfg *config.Config) ([]byte, error) {
	st, err := engine.ReadStatus(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("read the agent's journal in %s: %w", cfg.DataDir, err)
	}
	contact, _ := runner.ReadContact(cfg.DataDir)
	var b bytes.Buffer
	if err := printJSON(&b, newStatus(cfg, st, contact)); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
