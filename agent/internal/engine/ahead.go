package engine

// Downloading ahead. A job that waits for its site's maintenance window
// may fetch its bundle before the window opens, so that the window is
// spent on the upgrade alone. Prefetch makes the trust checks the job's
// own download makes (trust.go), then has the Fetcher download and verify
// the target into <data_dir>/ahead/<sha256>. The job's download step later
// moves that file into place when the target it resolves then has the same
// signed sha256 and length, and the Fetcher verifies it there again
// without a request; verify hashes it once more, as for any download. At
// most one bundle is kept ahead. Nothing of the app, the install dir or
// the journal is touched, so a prefetch needs no recovery: a crash leaves
// a .part the next download resumes, or a file the next job uses or
// removes.

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/pkg/versions"
)

// aheadDir is where bundles downloaded ahead wait for their job.
func aheadDir(dataDir string) string { return filepath.Join(dataDir, "ahead") }

// Prefetch downloads and verifies a's bundle ahead of its job. It is
// refused (ErrUntrusted) for an assignment the job would refuse, and does
// nothing when a's version is installed already or its bundle is already
// here.
func (e *Engine) Prefetch(ctx context.Context, a protocol.Assignment) error {
	if err := checkAssignment(a); err != nil {
		return err
	}
	if e.cfg.Fetcher == nil {
		return errors.New("engine config: Fetcher is nil")
	}
	if !e.runMu.TryLock() {
		return fmt.Errorf("download ahead for job %s: %w", a.JobID, ErrBusy)
	}
	defer e.runMu.Unlock()
	installed, err := e.j.siteValue(ctx, keyInstalled)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	if installed != "" && versions.Equal(installed, a.Version) {
		return nil
	}
	p := e.policy()
	if err := p.checkRequest(a); err != nil {
		return err
	}
	length, sum, custom, err := e.cfg.Fetcher.Target(ctx, a.Target)
	if err != nil {
		return fmt.Errorf("download ahead %s: %w", a.Target, err)
	}
	if err := p.checkSigned(a, installed, custom); err != nil {
		return err
	}
	if !isSHA256(sum) || length <= 0 {
		return fmt.Errorf("download ahead %s: the fetcher gave sha256 %q and length %d", a.Target, sum, length)
	}
	dir := aheadDir(e.cfg.DataDir)
	name := sum + ".tar.gz"
	// Keep only this bundle (and its .part, to resume).
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for _, de := range entries {
		if de.Name() != name && de.Name() != name+".part" {
			if err := os.RemoveAll(filepath.Join(dir, de.Name())); err != nil {
				return err
			}
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := e.cfg.Fetcher.Download(ctx, a.Target, filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("download ahead %s: %w", a.Target, err)
	}
	e.log.Info("bundle downloaded ahead of its window", "job", a.JobID, "target", a.Target, "bytes", length)
	return nil
}

// takeAhead moves the bundle downloaded ahead for jb's target, if there is
// one of the signed length, to where jb downloads it, and says whether it
// did. The Fetcher's download then verifies it without a request.
func takeAhead(jb *job) bool {
	src := filepath.Join(aheadDir(jb.dataDir), jb.rec.SHA256+".tar.gz")
	fi, err := os.Stat(src)
	if err != nil || !fi.Mode().IsRegular() || fi.Size() != jb.rec.Length {
		return false
	}
	if err := os.Rename(src, jb.bundlePath()); err != nil {
		jb.log.Warn("the bundle downloaded ahead cannot be used; downloading it again", "err", err)
		return false
	}
	jb.log.Info("using the bundle downloaded ahead", "sha256", jb.rec.SHA256)
	return true
}

// cleanupAhead removes what was downloaded ahead: at a job's end, whatever
// is left there belongs to no job.
func cleanupAhead(jb *job) error {
	err := os.RemoveAll(aheadDir(jb.dataDir))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
