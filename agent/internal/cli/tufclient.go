package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/dropless/dropless/agent/internal/faketime"
	"github.com/dropless/dropless/agent/internal/fetch"
	"github.com/dropless/dropless/pkg/atomicfile"
)

// tufClientFlags are the flags of tuf-client, given before the verb in any
// order (the client protocol of the TUF conformance suite).
type tufClientFlags struct {
	metadataDir   string
	metadataURL   string
	targetNames   []string
	targetBaseURL string
	targetDir     string
	verbose       bool
}

// tufClientVerbFlags lists, for each verb, the flags it needs. A verb
// refuses the others: a --target-name given to refresh was meant for
// download, and exit 0 would say it verified.
var tufClientVerbFlags = map[string][]string{
	"init":     {"metadata-dir"},
	"refresh":  {"metadata-dir", "metadata-url"},
	"download": {"metadata-dir", "metadata-url", "target-name", "target-base-url", "target-dir"},
}

const tufClientLong = `The agent's update channel as a command: the same TUF metadata client and
the same streaming, verifying target download that an upgrade uses, to check
a repository, a mirror or an air-gap copy by hand. It follows the client
protocol of the TUF conformance suite: flags before the verb, in any order.

  updateagent tuf-client --metadata-dir DIR init ROOT_FILE
  updateagent tuf-client --metadata-dir DIR --metadata-url URL refresh
  updateagent tuf-client --metadata-dir DIR --metadata-url URL \
      --target-name PATH [--target-name PATH]... --target-base-url URL --target-dir TDIR download

init trusts ROOT_FILE as the repository's root (DIR/root.json), without any
request. refresh runs the TUF client workflow for the top-level roles (root
rotations, timestamp, snapshot, targets: signatures, expiry, versions,
hashes) and keeps what it trusts in DIR under unversioned names: root.json,
timestamp.json, snapshot.json, targets.json and <role>.json for the
delegated roles reached. download refreshes, then for each --target-name in
order resolves it through the delegations, downloads it, verified against
its signed length and hashes, and stores it in TDIR under a name escaped
from its path (the same path always gives the same name). A file there that
already verifies is not fetched again; one that does not is removed.
download stops at the first target that fails; nothing partial or
unverified is left in TDIR.

Exit status: 0 when everything verified; 1 when something was refused or
failed, with one line on stderr naming the role or the target and the
reason (bad_signature, expired, rollback, bad_version, hash_mismatch,
length_exceeded, ...); 2 on a usage error.

Environment: FAKETIME sets the reference time for metadata expiry, in
libfaketime's formats (a Go program does not see libfaketime's clock):
+N or -N seconds from now, with an optional m, h, d or y suffix (+8d, -2h);
"@YYYY-MM-DD hh:mm:ss" (the clock starts then) or "YYYY-MM-DD hh:mm:ss"
(frozen), in the local time zone: the one TZ names, UTC when TZ is empty,
the system's when TZ is unset. A FAKETIME it cannot read is a usage error.`

func newTUFClientCmd(stdio IO) *cobra.Command {
	f := &tufClientFlags{}
	cmd := &cobra.Command{
		Use:   "tuf-client --metadata-dir DIR [flags] init|refresh|download",
		Short: "Check a TUF repository, a mirror or an air-gap copy with the agent's own TUF client",
		Long:  tufClientLong,
		Args:  noArgs,
		RunE: func(*cobra.Command, []string) error {
			return usagef("tuf-client needs a verb: init ROOT_FILE, refresh or download")
		},
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&f.metadataDir, "metadata-dir", "", "directory of the trusted metadata (`DIR`)")
	pf.StringVar(&f.metadataURL, "metadata-url", "", "base `URL` of the repository's metadata (refresh, download)")
	pf.StringArrayVar(&f.targetNames, "target-name", nil, "target `PATH` to download; repeat for several, handled in order (download)")
	pf.StringVar(&f.targetBaseURL, "target-base-url", "", "base `URL` of the repository's targets (download)")
	pf.StringVar(&f.targetDir, "target-dir", "", "directory for the verified targets (`TDIR`, download)")
	pf.BoolVarP(&f.verbose, "verbose", "v", false, "log each step on stderr")

	cmd.AddCommand(
		&cobra.Command{
			Use:   "init ROOT_FILE",
			Short: "Trust ROOT_FILE as the repository's root (stored as DIR/root.json); no request",
			Args: func(_ *cobra.Command, args []string) error {
				if len(args) != 1 {
					return usagef("tuf-client init takes one argument, the root file (got %d)", len(args))
				}
				return nil
			},
			RunE: func(cmd *cobra.Command, args []string) error {
				if err := f.check(cmd, "init"); err != nil {
					return err
				}
				return f.initRoot(stdio, args[0])
			},
		},
		&cobra.Command{
			Use:   "refresh",
			Short: "Refresh the trusted top-level metadata in DIR from --metadata-url",
			Args:  noArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				if err := f.check(cmd, "refresh"); err != nil {
					return err
				}
				return f.run(cmd.Context(), stdio, false)
			},
		},
		&cobra.Command{
			Use:   "download",
			Short: "Refresh, then download and verify each --target-name into --target-dir",
			Args:  noArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				if err := f.check(cmd, "download"); err != nil {
					return err
				}
				return f.run(cmd.Context(), stdio, true)
			},
		},
	)
	return cmd
}

// check refuses, as usage errors, a flag verb needs but lacks, one it does
// not use, an empty value and a URL that is not http(s).
func (f *tufClientFlags) check(cmd *cobra.Command, verb string) error {
	need := tufClientVerbFlags[verb]
	for _, name := range []string{"metadata-dir", "metadata-url", "target-name", "target-base-url", "target-dir"} {
		needed := slices.Contains(need, name)
		switch set := cmd.Flags().Changed(name); {
		case needed && !set:
			return usagef("tuf-client %s needs --%s", verb, name)
		case !needed && set:
			return usagef("tuf-client %s does not take --%s", verb, name)
		}
	}
	for _, v := range []struct{ name, val string }{
		{"metadata-dir", f.metadataDir}, {"metadata-url", f.metadataURL},
		{"target-base-url", f.targetBaseURL}, {"target-dir", f.targetDir},
	} {
		if cmd.Flags().Changed(v.name) && strings.TrimSpace(v.val) == "" {
			return usagef("--%s is empty", v.name)
		}
	}
	for _, v := range []struct{ name, val string }{{"metadata-url", f.metadataURL}, {"target-base-url", f.targetBaseURL}} {
		if v.val == "" {
			continue
		}
		if u, err := url.Parse(v.val); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return usagef("--%s %q is not an http:// or https:// URL", v.name, v.val)
		}
	}
	for _, name := range f.targetNames {
		if name == "" {
			return usagef("--target-name is empty")
		}
	}
	return nil
}

func (f *tufClientFlags) logger(stdio IO) *slog.Logger {
	if !f.verbose {
		return nil // fetch discards
	}
	return slog.New(slog.NewTextHandler(stdio.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// initRoot stores rootFile as the trusted root. It checks only that the file
// is root metadata: like the conformance suite's init, it trusts what it
// is given. Other metadata already in DIR is kept (it still guards
// against rollback).
func (f *tufClientFlags) initRoot(stdio IO, rootFile string) error {
	data, err := os.ReadFile(rootFile)
	if err != nil {
		return fmt.Errorf("init: read the root file: %w; give the path of the repository's root.json", err)
	}
	c, err := fetch.New(fetch.Config{MetadataDir: f.metadataDir, Log: f.logger(stdio)})
	if err != nil {
		return tufFailure("init", err)
	}
	if err := c.Init(data); err != nil {
		if e, ok := errors.AsType[*fetch.Error](err); ok && e.Kind == fetch.ErrBadMetadata {
			return &tufError{line: fmt.Sprintf("init: %s: %s [%s]; give the repository's root.json", rootFile, e.Msg, e.Kind), err: err}
		}
		return tufFailure("init", err)
	}
	root, _ := metadata.Root().FromBytes(data) // Init parsed it
	fmt.Fprintf(stdio.Stdout, "trusted root version %d stored in %s\n", root.Signed.Version, filepath.Join(f.metadataDir, "root.json"))
	return nil
}

// run is refresh, and download when download is set: the calls an
// upgrade makes (runner's tufFetcher: Bootstrap, Refresh, Target,
// Download), on the same fetch.Client.
func (f *tufClientFlags) run(ctx context.Context, stdio IO, download bool) error {
	verb := "refresh"
	if download {
		verb = "download " + strings.Join(f.targetNames, ", ")
	}
	log := f.logger(stdio)
	cfg := fetch.Config{
		MetadataURL: f.metadataURL,
		TargetsURL:  f.targetBaseURL,
		MetadataDir: f.metadataDir,
		Log:         log,
	}
	clock, fake, err := faketime.FromEnv()
	if err != nil {
		return usageError{err}
	}
	if fake {
		cfg.RefTime = clock.Now
		if log != nil {
			log.Info("reference time from FAKETIME", "faketime", os.Getenv(faketime.Env), "ref_time", clock.Now().UTC(), "frozen", clock.Frozen())
		}
	}
	c, err := fetch.New(cfg)
	if err != nil {
		return tufFailure(verb, err)
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	if err := c.Bootstrap(ctx); err != nil {
		return tufFailure(verb, err)
	}
	if err := c.Refresh(ctx); err != nil {
		return tufFailure(verb, err)
	}
	if !download {
		fmt.Fprintf(stdio.Stdout, "refreshed %s: %s\n", f.metadataDir, trustedVersions(f.metadataDir))
		return nil
	}
	if err := os.MkdirAll(f.targetDir, 0o755); err != nil {
		return fmt.Errorf("download: create --target-dir: %w", err)
	}
	for _, name := range f.targetNames {
		if err := downloadTarget(ctx, stdio, c, name, f.targetDir); err != nil {
			return tufFailure("download "+name, err)
		}
	}
	return nil
}

// downloadTarget resolves name and stores it verified as
// tdir/fetch.LocalName(name), unless a file there already verifies. The
// download goes to a private directory in tdir (its name starts with a
// dot, which no LocalName does) that is removed whatever happens, so tdir
// never holds a partial or unverified file under a target's name.
func downloadTarget(ctx context.Context, stdio IO, c *fetch.Client, name, tdir string) error {
	t, err := c.Target(ctx, name)
	if err != nil {
		return err
	}
	dst := filepath.Join(tdir, fetch.LocalName(name))
	switch err := c.Verify(ctx, t, dst); {
	case err == nil:
		fmt.Fprintf(stdio.Stdout, "%s: %s is already the verified target (%d bytes), not downloaded again\n", name, dst, t.Length)
		return nil
	case errors.Is(err, fetch.ErrNotFound):
	case errors.Is(err, fetch.ErrHashMismatch), errors.Is(err, fetch.ErrLengthMismatch):
		// Another version of the target, or something else: removed, as
		// Download removes a dst that does not verify.
		if err := os.Remove(dst); err != nil {
			return &fetch.Error{Kind: fetch.ErrLocal, Target: name, Msg: err.Error(), Err: err}
		}
	default:
		return err
	}
	stage, err := os.MkdirTemp(tdir, ".updateagent-download-")
	if err != nil {
		return &fetch.Error{Kind: fetch.ErrLocal, Target: name, Msg: err.Error(), Err: err}
	}
	defer os.RemoveAll(stage)
	tmp := filepath.Join(stage, fetch.LocalName(name))
	res, err := c.Download(ctx, t, tmp)
	if err != nil {
		return err
	}
	if err := atomicfile.Rename(tmp, dst); err != nil {
		return &fetch.Error{Kind: fetch.ErrLocal, Target: name, Msg: err.Error(), Err: err}
	}
	fmt.Fprintf(stdio.Stdout, "%s: downloaded and verified into %s (%d bytes, sha256 %s)\n", name, dst, res.Bytes, t.Hashes["sha256"])
	return nil
}

// tufError is a refusal or failure of tuf-client: Run prints it as the one
// line "updateagent: <what>: <why> [<reason>]; <what to do>".
type tufError struct {
	line string
	err  error
}

func (e *tufError) Error() string { return e.line }
func (e *tufError) Unwrap() error { return e.err }

// tufFailure explains err, which came from fetch while doing what.
func tufFailure(what string, err error) error {
	reason := fetch.Reason(err)
	msg := err.Error()
	if e, ok := errors.AsType[*fetch.Error](err); ok && e.Role == "" && e.Target != "" && what == "download "+e.Target {
		msg = e.Msg // what already names the target
	}
	line := fmt.Sprintf("%s: %s [%s]", what, msg, reason)
	if h := tufHint(err, reason); h != "" {
		line += "; " + h
	}
	return &tufError{line: line, err: err}
}

func tufHint(err error, reason string) string {
	switch fetch.Kind(reason) {
	case fetch.ErrBadSignature:
		return "refused: it is not signed by the keys the trusted root names; have the repository's owner check it before anyone uses it"
	case fetch.ErrExpired:
		return "refused: check this machine's clock (and FAKETIME); if it is right, the repository must be signed again"
	case fetch.ErrRollback:
		return "refused: the repository or a mirror serves older metadata than this client already trusts; check the mirror"
	case fetch.ErrBadVersion:
		return "refused: the repository or a mirror serves metadata other than what the timestamp and snapshot list; check the mirror"
	case fetch.ErrHashMismatch, fetch.ErrLengthMismatch:
		if e, ok := errors.AsType[*fetch.Error](err); ok && e.Role != "" {
			return "refused: the repository or a mirror serves metadata other than what the timestamp and snapshot list (mix-and-match?); check the mirror"
		}
		return "refused, nothing stored: the repository or a mirror serves content other than what the signed metadata lists; check the mirror"
	case fetch.ErrLengthExceeded:
		return "refused, nothing stored: the server sent more than the signed length; check the mirror"
	case fetch.ErrBadMetadata:
		return "refused: the repository serves malformed or inconsistent metadata; check it"
	case fetch.ErrNotFound:
		if _, ok := errors.AsType[*metadata.ErrDownloadHTTP](err); ok {
			return "check --metadata-url and --target-base-url"
		}
		return "check the --target-name"
	case fetch.ErrHTTP, fetch.ErrNetwork:
		return "check --metadata-url and --target-base-url and that the server answers"
	case fetch.ErrNoRoot:
		return "run 'updateagent tuf-client --metadata-dir DIR init ROOT_FILE' first"
	case fetch.ErrLocal:
		return "check that --metadata-dir and --target-dir are writable and have room"
	case fetch.ErrCanceled:
		return "interrupted; nothing unverified was stored"
	}
	return ""
}

// trustedVersions reads the versions of the top-level metadata in dir,
// for refresh's report.
func trustedVersions(dir string) string {
	var parts []string
	for _, role := range []string{metadata.ROOT, metadata.TIMESTAMP, metadata.SNAPSHOT, metadata.TARGETS} {
		var md struct {
			Signed struct {
				Version int64 `json:"version"`
			} `json:"signed"`
		}
		v := "?"
		if b, err := os.ReadFile(filepath.Join(dir, role+".json")); err == nil && json.Unmarshal(b, &md) == nil {
			v = fmt.Sprint(md.Signed.Version)
		}
		parts = append(parts, role+" v"+v)
	}
	return strings.Join(parts, ", ")
}
