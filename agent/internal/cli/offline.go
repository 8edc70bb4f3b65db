package cli

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/dropless/dropless/agent/internal/runner"
	"github.com/dropless/dropless/pkg/atomicfile"
	"github.com/dropless/dropless/pkg/protocol"
)

func newApplyOfflineCmd(stdio IO) *cobra.Command {
	var cfgPath, reportPath string
	cmd := &cobra.Command{
		Use:   "apply-offline --config FILE [--report FILE] AIRGAP_FILE",
		Short: "Upgrade from an air-gap file (updateserver offline export), without the network",
		Long: `Upgrade this site from an air-gap file that updateserver offline export
wrote, with no network path to the update server. The file's TUF metadata
is verified against the root the config pins (root_sha256) and each bundle
against that metadata, by the same client the agent uses online; a file
that is damaged, tampered with, expired, of another product or of another
repository is refused before the app is touched. Each version the file
holds that is newer than the installed one is then installed in order, by
the same engine, with the same checks, backups and rollback as online.

The jobs' events reach the server when the agent next reaches it; with
--report FILE they are also written to FILE, signed with the agent's
credential, for support to import (updateserver sites import-report FILE).

Stop the agent's service first: one process at a time uses data_dir.
Exit 0 when every job succeeded, 1 otherwise.`,
		Args: exactArgs(1, "the AIRGAP_FILE to apply"),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(cfgPath)
			if err != nil {
				return err
			}
			log := slog.New(slog.NewTextHandler(stdio.Stderr, nil))
			res, err := runner.ApplyOffline(cmd.Context(), cfg, args[0], log)
			if err != nil {
				return err
			}
			if res.Report != nil && reportPath != "" {
				if err := atomicfile.WriteFile(reportPath, res.Report, 0o600); err != nil {
					return fmt.Errorf("write the report: %w", err)
				}
			}
			for _, j := range res.Jobs {
				from := j.From
				if from == "" {
					from = "(nothing)"
				}
				fmt.Fprintf(stdio.Stdout, "job %s: %s -> %s %s\n", j.ID, from, j.To, j.Result)
			}
			if len(res.Jobs) == 0 {
				fmt.Fprintf(stdio.Stdout, "%s %s is already installed: nothing to do\n", cfg.Product, res.Installed)
			}
			fmt.Fprintf(stdio.Stdout, "installed: %s\n", res.Installed)
			if res.Report != nil && reportPath != "" {
				fmt.Fprintf(stdio.Stdout, "report written to %s: take it to support (updateserver sites import-report %s)\n", reportPath, reportPath)
			}
			if !res.Succeeded() {
				last := res.Jobs[len(res.Jobs)-1]
				return errors.New("job " + last.ID + " ended " + last.Result + " (" + resultHint(last) + "): see updateagent status")
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", defaultConfigPath(), "agent config file (TOML)")
	cmd.Flags().StringVar(&reportPath, "report", "", "write the jobs' report to this file, for updateserver sites import-report")
	return cmd
}

func resultHint(j protocol.JobStatus) string {
	if j.Result == protocol.ResultRolledBack {
		return "the previous version runs again"
	}
	return "the app was left as it was, or as the rollback left it"
}

func exactArgs(n int, names string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("%s needs %s", cmd.CommandPath(), names)
		}
		return nil
	}
}
