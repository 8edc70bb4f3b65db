// Package cli is the updateserver command line: the daemon (serve, init),
// local data-dir commands (root sha256, key ...) and the operator commands,
// which are HTTP clients of a running server and of nothing else.
//
// Exit codes: 0 success, 1 failure, 2 usage error. Errors are one line on
// stderr that says what to do.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/dropless/dropless/pkg/tlstrust"
	"github.com/dropless/dropless/updateserver/internal/client"
)

// Exit codes.
const (
	ExitOK    = 0
	ExitFail  = 1
	ExitUsage = 2
)

// usageError marks an error in how the command was called.
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// IO is where a command reads and writes.
type IO struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Getenv         func(string) string
}

// Run runs the updateserver command line with args (without the program
// name) and returns the exit code.
func Run(ctx context.Context, args []string, stdio IO) int {
	if stdio.Getenv == nil {
		stdio.Getenv = os.Getenv
	}
	root := newRoot(stdio)
	if err := unknownCommand(root, args); err != nil {
		fmt.Fprintf(stdio.Stderr, "updateserver: %s\n", err)
		return ExitUsage
	}
	root.SetArgs(args)
	root.SetIn(stdio.Stdin)
	root.SetOut(stdio.Stdout)
	root.SetErr(stdio.Stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	msg := strings.TrimSpace(err.Error())
	var ue usageError
	isUsage := errors.As(err, &ue) || strings.HasPrefix(msg, "unknown command") || strings.HasPrefix(msg, "unknown flag") ||
		strings.HasPrefix(msg, "unknown shorthand flag")
	if isUsage {
		fmt.Fprintf(stdio.Stderr, "updateserver: %s (see --help)\n", msg)
		return ExitUsage
	}
	fmt.Fprintf(stdio.Stderr, "updateserver: %s\n", msg)
	return ExitFail
}

func newRoot(stdio IO) *cobra.Command {
	root := &cobra.Command{
		Use:   "updateserver",
		Short: "Update server: publish signed installers and upgrade on-premise sites",
		Long: `updateserver runs the update server (serve) and drives it (every other
command is an HTTP client of a running server, configured with --server and
--token or UPDATESERVER_URL and UPDATESERVER_TOKEN; for an https server whose
certificate your own CA signed, also --ca-file or UPDATESERVER_CA_FILE).`,
		SilenceErrors: true,
		SilenceUsage:  true,
		Args:          noArgs,
		RunE:          needSubcommand,
	}
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(
		newServeCmd(stdio),
		newInitCmd(stdio),
		newRootCmd(stdio),
		newKeyCmd(stdio),
		newTokenCmd(stdio),
		newReleaseCmd(stdio),
		newRepoCmd(stdio),
		newOfflineCmd(stdio),
		newEnrollTokenCmd(stdio),
		newSitesCmd(stdio),
		newUpgradeCmd(stdio),
		newHistoryCmd(stdio),
		newWindowCmd(stdio),
		newFreezeCmd(stdio),
		newRolloutCmd(stdio),
		newWebhookCmd(stdio),
		newAuditCmd(stdio),
		newVersionCmd(stdio),
	)
	return root
}

// unknownCommand finds an unknown subcommand in args before cobra parses
// flags: cobra would treat `window set --site s` as arguments of the root
// and complain about --site, or print the root's help for `rollout --help`.
func unknownCommand(root *cobra.Command, args []string) error {
	root.InitDefaultHelpCmd()
	cmd, rest, err := root.Find(args)
	if err != nil || !cmd.HasSubCommands() {
		return nil
	}
	for _, a := range rest {
		if strings.HasPrefix(a, "-") {
			continue
		}
		return fmt.Errorf("unknown command %q for %q: the commands are %s (see --help)", a, cmd.CommandPath(), strings.Join(subNames(cmd), ", "))
	}
	return nil
}

// group returns a command that only holds subcommands.
func group(use, short string, subs ...*cobra.Command) *cobra.Command {
	c := &cobra.Command{Use: use, Short: short, Args: noArgs, RunE: needSubcommand}
	c.AddCommand(subs...)
	return c
}

func needSubcommand(cmd *cobra.Command, args []string) error {
	return usagef("%s needs a subcommand: one of %s", cmd.CommandPath(), strings.Join(subNames(cmd), ", "))
}

func subNames(cmd *cobra.Command) []string {
	var out []string
	for _, c := range cmd.Commands() {
		if c.IsAvailableCommand() {
			out = append(out, c.Name())
		}
	}
	return out
}

func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		if cmd.HasSubCommands() {
			return usagef("unknown command %q for %q", args[0], cmd.CommandPath())
		}
		return usagef("%s takes no arguments, got %q", cmd.CommandPath(), args[0])
	}
	return nil
}

func exactArgs(n int, names string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("%s needs %s", cmd.CommandPath(), names)
		}
		return nil
	}
}

func required(cmd *cobra.Command, names ...string) error {
	for _, n := range names {
		if !cmd.Flags().Changed(n) {
			return usagef("%s needs --%s", cmd.CommandPath(), n)
		}
	}
	return nil
}

// apiFlags are the flags of every operator command.
type apiFlags struct {
	server, token, caFile string
}

func (f *apiFlags) register(fs *pflag.FlagSet, stdio IO) {
	def := stdio.Getenv("UPDATESERVER_URL")
	if def == "" {
		def = "http://127.0.0.1:8080"
	}
	fs.StringVar(&f.server, "server", def, "update server URL (env UPDATESERVER_URL)")
	fs.StringVar(&f.token, "token", stdio.Getenv("UPDATESERVER_TOKEN"), "operator token (env UPDATESERVER_TOKEN)")
	fs.StringVar(&f.caFile, "ca-file", stdio.Getenv("UPDATESERVER_CA_FILE"), "PEM file of the CA that signed an https server's certificate, trusted besides the system's (env UPDATESERVER_CA_FILE)")
}

func (f *apiFlags) client() (*client.Client, error) {
	if f.token == "" {
		return nil, usagef("no token: pass --token or set UPDATESERVER_TOKEN (the first admin token is in the server's data dir, admin.token)")
	}
	tlsCfg, err := tlstrust.ClientConfig(f.caFile)
	if err != nil {
		return nil, fmt.Errorf("--ca-file: %w: give the PEM file of the CA that signed the server's certificate", err)
	}
	c, err := client.New(f.server, f.token, tlsCfg)
	if err != nil {
		return nil, usageError{err}
	}
	return c, nil
}

// withAPI registers the API flags on cmd and returns them.
func withAPI(cmd *cobra.Command, stdio IO) *apiFlags {
	f := &apiFlags{}
	f.register(cmd.Flags(), stdio)
	return f
}
