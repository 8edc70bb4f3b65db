package cli

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/dropless/dropless/pkg/bundle"
	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/client"
	"github.com/dropless/dropless/updateserver/internal/publish"
	"github.com/dropless/dropless/updateserver/internal/tufrepo"
)

func newReleaseCmd(stdio IO) *cobra.Command {
	return group("release", "Publish, promote, yank and list releases",
		newPublishCmd(stdio), newPromoteCmd(stdio), newYankCmd(stdio), newListCmd(stdio),
		newShowCmd(stdio), newNotesCmd(stdio))
}

type publishFlags struct {
	product, version, notesFile, upgradeFrom, signKey string
	channels                                          []string
	targetsExpires                                    time.Duration
	progress                                          string
}

func newPublishCmd(stdio IO) *cobra.Command {
	var f publishFlags
	cmd := &cobra.Command{
		Use:   "publish --product P --version V [--channel C]... [--notes FILE] [--upgrade-from CONSTRAINT] PATH",
		Short: "Publish a bundle (a directory or a .tar.gz) as a signed release",
		Long: `Publish a bundle as a release. PATH is a bundle directory (bundle.toml,
files/, migrations/, hooks/), packed deterministically, or a bundle .tar.gz.
Flags win over bundle.toml.

With --sign-key FILE the targets metadata is signed here, with the release
team's targets key, and the server only checks and serves it: use this once
the targets key is off the server (updateserver key export --remove).`,
		Args: exactArgs(1, "the bundle PATH (a directory or a .tar.gz)"),
	}
	api := withAPI(cmd, stdio)
	fs := cmd.Flags()
	fs.StringVar(&f.product, "product", "", "product name, e.g. acme-erp")
	fs.StringVar(&f.version, "version", "", "release version, e.g. 3.2.1")
	fs.StringArrayVar(&f.channels, "channel", nil, "channel to publish on (repeatable)")
	fs.StringVar(&f.notesFile, "notes", "", "file holding the release notes (- for standard input)")
	fs.StringVar(&f.upgradeFrom, "upgrade-from", "", `versions this release may upgrade from, e.g. ">= 2.0, < 3.0"`)
	fs.StringVar(&f.signKey, "sign-key", "", "sign the targets metadata here with this targets key (PEM)")
	fs.DurationVar(&f.targetsExpires, "targets-expires", tufrepo.DefaultExpiry().Targets, "with --sign-key: how long the signed targets metadata stays valid")
	fs.StringVar(&f.progress, "progress", "auto", "upload progress on stderr: auto (on a terminal), always or never")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if err := required(cmd, "product", "version"); err != nil {
			return err
		}
		c, err := api.client()
		if err != nil {
			return err
		}
		return runPublish(cmd.Context(), stdio, c, f, args[0])
	}
	return cmd
}

func runPublish(ctx context.Context, stdio IO, c *client.Client, f publishFlags, path string) error {
	req := protocol.PublishRequest{Product: f.product, Version: f.version, UpgradeFrom: f.upgradeFrom, Channels: f.channels}
	if f.notesFile != "" {
		notes, err := readNotes(stdio, f.notesFile)
		if err != nil {
			return err
		}
		req.Notes = notes
	}
	// Check what can be checked before sending gigabytes.
	if err := publish.ValidateRelease(protocol.Release{Product: f.product, Version: f.version, UpgradeFrom: f.upgradeFrom, Notes: req.Notes, Channels: f.channels}); err != nil {
		return usageError{err}
	}
	// A release never changes: ask before sending gigabytes.
	switch existing, err := c.Release(ctx, f.product, f.version); {
	case err == nil:
		return fmt.Errorf("%s %s is already published (on %s, %s): releases are immutable, publish a new version",
			existing.Product, existing.Version, orDash(strings.Join(existing.Channels, ", ")), existing.PublishedAt.Format(time.RFC3339))
	case !client.IsNotFound(err):
		return err
	}
	var signer *tufrepo.Signer
	if f.signKey != "" {
		var err error
		if signer, err = tufrepo.LoadSignerFile(f.signKey); err != nil {
			return fmt.Errorf("--sign-key: %w", err)
		}
	}

	src, size, closeSrc, err := openBundle(ctx, path)
	if err != nil {
		return err
	}
	defer closeSrc()
	up, sent, sum, err := uploadBundle(ctx, c, src, size, signer != nil, newProgress(stdio.Stderr, size, f.progress))
	if perr := closeSrc(); perr != nil {
		return perr
	}
	if err != nil {
		return fmt.Errorf("upload %s: %w", path, err)
	}
	if up.Length != sent || sum != "" && up.SHA256 != sum {
		return fmt.Errorf("the server received different bytes (sha256 %s, %d bytes) than were sent (sha256 %s, %d bytes): check for a proxy altering uploads", up.SHA256, up.Length, orDash(sum), sent)
	}
	req.UploadID = up.ID

	if signer != nil {
		// Sign locally: extend the current targets metadata by this one
		// target, computed from what we sent, not from what the server says.
		cur, err := c.RepoTargets(ctx)
		if err != nil {
			return fmt.Errorf("fetch current targets metadata: %w", err)
		}
		if err := tufrepo.VerifySignedBy(cur, signer); err != nil {
			return err
		}
		up.SHA256, up.Length = sum, sent
		rel := publish.Effective(up, req)
		if err := publish.ValidateRelease(rel); err != nil {
			return err
		}
		targetPath, tf, err := publish.TargetFor(rel)
		if err != nil {
			return err
		}
		next, err := tufrepo.AddTarget(cur, targetPath, tf, time.Now().Add(f.targetsExpires), signer)
		if err != nil {
			return err
		}
		req.TargetsMetadata = next
	}
	rel, err := c.Publish(ctx, req)
	if err != nil {
		return err
	}
	chans := "on no channel yet (add one with release promote)"
	if len(rel.Channels) > 0 {
		chans = "on channel " + strings.Join(rel.Channels, ", ")
	}
	fmt.Fprintf(stdio.Stdout, "published %s %s %s\n  target %s\n  sha256 %s (%s)\n", rel.Product, rel.Version, chans, rel.Target, rel.SHA256, humanize.IBytes(uint64(rel.Length)))
	return nil
}

func readNotes(stdio IO, name string) (string, error) {
	var b []byte
	var err error
	if name == "-" {
		b, err = io.ReadAll(io.LimitReader(stdio.Stdin, 1<<20))
	} else {
		b, err = os.ReadFile(name)
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", usagef("--notes %s: no such file: give the file that holds the release notes, or - to read them from standard input", name)
	case err != nil:
		return "", fmt.Errorf("--notes %s: %w", name, errors.Unwrap(err))
	}
	return string(b), nil
}

// openBundle opens PATH: a .tar.gz file as it is, a directory packed on the
// fly (size unknown, -1).
func openBundle(ctx context.Context, path string) (io.Reader, int64, func() error, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, 0, nil, fmt.Errorf("bundle %s: %w", path, errors.Unwrap(err))
	}
	if !fi.IsDir() {
		f, err := os.Open(path)
		if err != nil {
			return nil, 0, nil, err
		}
		return f, fi.Size(), f.Close, nil
	}
	// Check the whole tree before the first byte goes out.
	if err := bundle.CheckDir(ctx, path); err != nil {
		return nil, 0, nil, fmt.Errorf("bundle directory %s: %w", path, err)
	}
	pr, pw := io.Pipe()
	packErr := make(chan error, 1)
	go func() {
		err := bundle.Pack(ctx, path, pw)
		pw.CloseWithError(err)
		packErr <- err
	}()
	closed := false
	var perr error
	closeFn := func() error {
		if !closed {
			closed = true
			pr.Close()
			if err := <-packErr; err != nil && !errors.Is(err, io.ErrClosedPipe) {
				perr = err // names the directory already
			}
		}
		return perr
	}
	return pr, -1, closeFn, nil
}

// uploadBundle sends the bundle src (size bytes, or -1 when packed on the
// fly) and returns the server's answer and the number of bytes sent. With
// hash it also returns the sha256 of the bytes sent, computed here: what an
// offline signer signs must not come from the server. It costs one sha256
// pass over the bundle on this machine (about 0.6 s of CPU per GiB on a
// core with SHA instructions), so it is only computed for signing; without
// it the server's sha256 is the one the release carries and the lengths
// are compared.
//
// A bundle file with no progress to draw goes out as the file itself
// (sendfile over plain HTTP); when signing, a second reader hashes it
// meanwhile, and a file changed while sending shows as a different sha256
// on the server.
func uploadBundle(ctx context.Context, c *client.Client, src io.Reader, size int64, withHash bool, prog *progress) (up protocol.Upload, sent int64, sum string, err error) {
	defer prog.done()
	if f, ok := src.(*os.File); ok && !prog.on {
		type hashed struct {
			sum string
			err error
		}
		done := make(chan hashed, 1)
		if withHash {
			go func() {
				h := sha256.New()
				_, err := io.Copy(h, io.NewSectionReader(f, 0, size))
				done <- hashed{hex.EncodeToString(h.Sum(nil)), err}
			}()
		} else {
			done <- hashed{}
		}
		// Its own descriptor, which the HTTP transport closes.
		up, err = c.UploadFile(ctx, f.Name(), size)
		res := <-done
		if err == nil && res.err != nil {
			err = fmt.Errorf("hash the bundle: %w", res.err)
		}
		return up, size, res.sum, err
	}
	h := sha256.New()
	seen := io.Writer(prog)
	if withHash {
		seen = io.MultiWriter(h, prog)
	}
	counted := &countingReader{r: src}
	// 1 MiB reads: the HTTP client sends each read as a chunk, and the
	// server's per-chunk cost (syscalls, hand-offs) dominates at 32 KiB.
	up, err = c.Upload(ctx, bufio.NewReaderSize(io.TeeReader(counted, seen), 1<<20))
	if withHash {
		sum = hex.EncodeToString(h.Sum(nil))
	}
	return up, counted.n, sum, err
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	return n, err
}

func newPromoteCmd(stdio IO) *cobra.Command {
	var product, version, channel string
	cmd := &cobra.Command{
		Use:   "promote --product P --version V --channel C",
		Short: "Put a published release on another channel (nothing is rebuilt)",
		Args:  noArgs,
	}
	productVersionFlags(cmd, &product, &version)
	cmd.Flags().StringVar(&channel, "channel", "", "channel to add")
	check := func(cmd *cobra.Command, _ []string) error {
		if err := required(cmd, "product", "version", "channel"); err != nil {
			return err
		}
		if err := publish.ValidateChannel(channel); err != nil {
			return usageError{err}
		}
		return nil
	}
	apiRun(cmd, stdio, check, func(cmd *cobra.Command, _ []string, c *client.Client) error {
		rel, err := c.Promote(cmd.Context(), product, version, channel)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdio.Stdout, "%s %s is on %s\n", rel.Product, rel.Version, strings.Join(rel.Channels, ", "))
		return nil
	})
	return cmd
}

func newYankCmd(stdio IO) *cobra.Command {
	var product, version, reason string
	cmd := &cobra.Command{
		Use:   "yank --product P --version V [--reason TEXT]",
		Short: "Withdraw a release: it is never offered again",
		Args:  noArgs,
	}
	productVersionFlags(cmd, &product, &version)
	cmd.Flags().StringVar(&reason, "reason", "", "why (shown in release list)")
	apiRun(cmd, stdio, requireFlags("product", "version"), func(cmd *cobra.Command, _ []string, c *client.Client) error {
		rel, err := c.Yank(cmd.Context(), product, version, reason)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdio.Stdout, "%s %s is yanked (%s)\n", rel.Product, rel.Version, orDash(rel.YankReason))
		return nil
	})
	return cmd
}

func newListCmd(stdio IO) *cobra.Command {
	var product, channel string
	cmd := &cobra.Command{
		Use:   "list [--product P] [--channel C] [--json]",
		Short: "List published releases, newest first",
		Args:  noArgs,
	}
	cmd.Flags().StringVar(&product, "product", "", "only this product")
	cmd.Flags().StringVar(&channel, "channel", "", "only releases on this channel")
	showRun(cmd, stdio, nil, func(ctx context.Context, c *client.Client, _ []string) ([]protocol.Release, error) {
		return c.Releases(ctx, product, channel)
	}, func(rs []protocol.Release) error {
		rows := make([][]string, 0, len(rs))
		for _, r := range rs {
			yanked := "-"
			if r.Yanked {
				yanked = "yanked: " + orDash(r.YankReason)
			}
			rows = append(rows, []string{r.Product, r.Version, orDash(strings.Join(r.Channels, ",")), orDash(r.UpgradeFrom), humanize.IBytes(uint64(r.Length)), ago(r.PublishedAt), yanked})
		}
		return table(stdio.Stdout, []string{"PRODUCT", "VERSION", "CHANNELS", "UPGRADE FROM", "SIZE", "PUBLISHED", "STATE"}, rows)
	})
	return cmd
}
