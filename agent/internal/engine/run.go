package engine

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/dropless/dropless/agent/internal/drift"
	"github.com/dropless/dropless/pkg/bundle"
	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/pkg/versions"
)

// ErrBusy is returned by Run and Recover while another Run or Recover is
// in progress in this process.
var ErrBusy = errors.New("the engine is busy with another job")

// ErrVerification is matched (errors.Is) by the failures that mean a
// downloaded bundle is not what its signed metadata says.
var ErrVerification = errors.New("verification failed")

// Run runs the job a describes to its end and returns its status. The
// error is nil whenever the job ended, whatever its result (succeeded,
// rolled_back or failed; see JobStatus.Result and Status.LastError). Run
// returns an error, and runs nothing, when the assignment is invalid or
// another job is unfinished (ErrUnfinished: call Recover first). A job ID
// that already ended is not run again: Run returns its recorded status.
//
// When ctx is cancelled (the agent shuts down) Run returns ctx's error and
// leaves the job unfinished in the journal, as a crash would: Recover, on
// the next start, fails it or rolls it back.
func (e *Engine) Run(ctx context.Context, a protocol.Assignment) (protocol.JobStatus, error) {
	if err := checkAssignment(a); err != nil {
		return protocol.JobStatus{}, err
	}
	if e.cfg.Fetcher == nil {
		return protocol.JobStatus{}, errors.New("engine config: Fetcher is nil")
	}
	if !e.runMu.TryLock() {
		return protocol.JobStatus{}, fmt.Errorf("job %s: %w", a.JobID, ErrBusy)
	}
	defer e.runMu.Unlock()

	switch rec, err := e.j.job(ctx, a.JobID); {
	case err == nil && rec.ended():
		e.log.Info("job already ended; not running it again", "job", rec.ID, "result", rec.Result)
		return rec.status(), nil
	case err == nil:
		return rec.status(), fmt.Errorf("job %s is unfinished (call Recover): %w", rec.ID, ErrUnfinished)
	case !errors.Is(err, errNoJob):
		return protocol.JobStatus{}, err
	}
	installed, err := e.j.siteValue(ctx, keyInstalled)
	if err != nil {
		return protocol.JobStatus{}, fmt.Errorf("journal: %w", err)
	}
	if a.From != "" && installed != "" && !versions.Equal(a.From, installed) {
		e.log.Warn("the assignment was made for another installed version", "job", a.JobID, "assignment_from", a.From, "installed", installed)
	}
	// The record's product is the configured one: the assignment's is a
	// request, checked in download (trust.go).
	rec := &jobRecord{ID: a.JobID, Product: e.cfg.Product, From: installed, To: a.Version, Target: a.Target, State: stDownloading, Assign: a}
	msg := fmt.Sprintf("downloading %s", a.Target)
	if installed != "" && versions.Equal(installed, a.Version) && a.Product == e.cfg.Product {
		// Nothing to do; the job still gets a history.
		rec.State, rec.Result = stCommitted, protocol.ResultSucceeded
		msg = fmt.Sprintf("%s is already installed: nothing to do", installed)
	}
	if err := e.j.createJob(ctx, rec, msg); err != nil {
		return protocol.JobStatus{}, err
	}
	jb := e.newJob(rec)
	jb.assign = a
	jb.allowDowngrade = e.policy().downgradeAllowed(a)
	jb.log.Info("job "+rec.State.String(), "seq", rec.Seq, "message", msg)
	if err := e.refresh(ctx); err != nil {
		jb.log.Warn("read status", "err", err)
	}
	if rec.ended() {
		return rec.status(), nil
	}
	e.failpoint(stDownloading)
	return e.drive(ctx, jb)
}

func checkAssignment(a protocol.Assignment) error {
	switch {
	case a.JobID == "":
		return errors.New("assignment: no job_id")
	case a.Product == "":
		return fmt.Errorf("assignment %s: no product", a.JobID)
	case a.Target == "":
		return fmt.Errorf("assignment %s: no target", a.JobID)
	}
	if err := checkVersionName(a.Version); err != nil {
		return fmt.Errorf("assignment %s: %w", a.JobID, err)
	}
	return nil
}

// drive runs jb from downloading (already journaled) to its end.
//
// Each e.enter below commits its transition, and SQLite's COMMIT with
// synchronous=FULL fsyncs it, before the action that follows: after a
// power loss or a kill at any point the journal shows the state whose
// action may have begun, never an earlier one, and Recover acts on that.
// A journal write that fails stops the job where it is (Recover takes it
// up); it never runs an action the journal does not show.
func (e *Engine) drive(ctx context.Context, jb *job) (protocol.JobStatus, error) {
	// Before stopping, a failure ends the job failed with the app untouched.
	if err := e.download(ctx, jb); err != nil {
		return e.failUntouched(ctx, jb, err)
	}
	// verified also records what the Fetcher vouched for (sha256, length).
	if err := e.enter(ctx, jb, change{state: stVerified, message: fmt.Sprintf("sha256 %s, %d bytes", jb.rec.SHA256, jb.rec.Length)}); err != nil {
		return jb.rec.status(), err
	}
	if err := e.verify(jb); err != nil {
		return e.failUntouched(ctx, jb, err)
	}
	if err := e.enter(ctx, jb, change{state: stPreflight, message: preflightMessage(jb)}); err != nil {
		return jb.rec.status(), err
	}
	prevLink, err := e.preflight(ctx, jb)
	if err != nil {
		return e.failUntouched(ctx, jb, preflightError(err))
	}

	// From stopping on, a failure rolls back. stopping records what
	// current pointed at: the rollback target.
	msg := "nothing installed: nothing to stop"
	if prevLink != "" {
		msg = "stopping " + orLink(linkVersion(prevLink), prevLink)
		if jb.meta.hasHook(bundle.HookPreStop) {
			msg = "running the pre-stop hook, then " + msg
		}
	}
	if jb.driftNote != "" {
		msg += " (drift accepted by the assignment: " + jb.driftNote + ")"
	}
	steps := jb.steps()
	err = e.enter(ctx, jb, change{state: stStopping, message: msg, edit: func(r *jobRecord) {
		r.PrevLink = prevLink
		r.ReleaseCreated = !jb.reuse
	}})
	if err != nil {
		return jb.rec.status(), err
	}
	if prevLink != "" {
		// pre-stop runs against the live app: its failure rolls back,
		// which restarts the old release (see hooks.go).
		if err := jb.runHook(ctx, bundle.HookPreStop); err != nil {
			return e.rollback(ctx, jb, "stopping failed: "+err.Error())
		}
		if err := e.cfg.App.Stop(ctx); err != nil {
			return e.rollback(ctx, jb, "stop failed: "+err.Error())
		}
	}
	for _, s := range steps {
		msg := s.message(jb)
		if s.state() == stStaging && jb.meta.hasHook(bundle.HookPostStage) {
			msg += ", then running the post-stage hook"
		}
		if err := e.enter(ctx, jb, change{state: s.state(), message: msg}); err != nil {
			return jb.rec.status(), err
		}
		if err := s.apply(ctx, jb); err != nil {
			return e.rollback(ctx, jb, fmt.Sprintf("%s failed: %v", s.state(), err))
		}
		if s.state() == stStaging {
			if err := jb.runHook(ctx, bundle.HookPostStage); err != nil {
				return e.rollback(ctx, jb, "staging failed: "+err.Error())
			}
		}
	}
	msg = "starting " + jb.rec.To
	if jb.meta.hasHook(bundle.HookPostStart) {
		msg += ", then running the post-start hook"
	}
	if err := e.enter(ctx, jb, change{state: stStarting, message: msg}); err != nil {
		return jb.rec.status(), err
	}
	if err := e.cfg.App.Start(ctx); err != nil {
		return e.rollback(ctx, jb, "start failed: "+err.Error())
	}
	if err := jb.runHook(ctx, bundle.HookPostStart); err != nil {
		return e.rollback(ctx, jb, "starting failed: "+err.Error())
	}
	if err := e.enter(ctx, jb, change{state: stHealthCheck, message: "checking the health of " + jb.rec.To}); err != nil {
		return jb.rec.status(), err
	}
	if err := e.healthy(ctx, jb.rec.To); err != nil {
		return e.rollback(ctx, jb, "health check failed: "+err.Error())
	}
	return e.commit(ctx, jb)
}

func orLink(v, link string) string {
	if v != "" {
		return v
	}
	return link
}

// download asks the Fetcher for the target's signed metadata, checks it
// at the trust boundary (trust.go: the configured product, the assigned
// version, upgrade_from, downgrades), and only then downloads the bundle.
func (e *Engine) download(ctx context.Context, jb *job) error {
	p := e.policy()
	if err := p.checkRequest(jb.assign); err != nil {
		return err
	}
	length, sum, custom, err := e.cfg.Fetcher.Target(ctx, jb.rec.Target)
	if err != nil {
		return fmt.Errorf("download %s: %w", jb.rec.Target, err)
	}
	if err := p.checkSigned(jb.assign, jb.rec.From, custom); err != nil {
		return err
	}
	if !isSHA256(sum) {
		return fmt.Errorf("download %s: the fetcher gave sha256 %q, not 64 lower-case hex digits", jb.rec.Target, sum)
	}
	if length <= 0 {
		return fmt.Errorf("download %s: the fetcher gave length %d", jb.rec.Target, length)
	}
	jb.custom = custom
	jb.rec.SHA256, jb.rec.Length = sum, length // journaled with verified
	if err := cleanupDownloads(jb); err != nil {
		return err
	}
	if err := os.MkdirAll(jb.downloadsDir(), 0o700); err != nil {
		return err
	}
	takeAhead(jb)
	if err := e.cfg.Fetcher.Download(ctx, jb.rec.Target, jb.bundlePath()); err != nil {
		return fmt.Errorf("download %s: %w", jb.rec.Target, err)
	}
	return nil
}

// verify checks the downloaded file against what the Fetcher vouched for:
// the Fetcher verified it already, this makes sure the file on disk is
// the one it verified.
func (e *Engine) verify(jb *job) error {
	fi, err := os.Stat(jb.bundlePath())
	if err != nil {
		return fmt.Errorf("verify download: %w", err)
	}
	if fi.Size() != jb.rec.Length {
		return fmt.Errorf("verify download: %d bytes, its metadata says %d: %w", fi.Size(), jb.rec.Length, ErrVerification)
	}
	sum, err := drift.HashFile(jb.bundlePath())
	if err != nil {
		return fmt.Errorf("verify download: %w", err)
	}
	if sum != jb.rec.SHA256 {
		return fmt.Errorf("verify download: sha256 %s, its metadata says %s: %w", sum, jb.rec.SHA256, ErrVerification)
	}
	return nil
}

// failUntouched ends a job that failed before the app was stopped. When
// the failure cannot be journaled either (a full disk fails the download
// and then the journal), the job stays unfinished in the state the journal
// shows, with nothing of it left on disk, and the error (ErrJournal) tells
// the caller to Recover it once the journal can be written: Recover then
// runs it again or ends it failed.
func (e *Engine) failUntouched(ctx context.Context, jb *job, cause error) (protocol.JobStatus, error) {
	if ctx.Err() != nil {
		return e.abandon(ctx, jb)
	}
	reason := cause.Error()
	jb.log.Warn("job failed before the app was touched", "reason", reason)
	e.cleanup(ctx, jb)
	err := e.enter(ctx, jb, change{state: stFailed, message: reason + " (the app was not touched)", result: protocol.ResultFailed, reason: reason})
	if err != nil {
		return jb.rec.status(), fmt.Errorf("job %s failed (%s) and %w", jb.rec.ID, reason, err)
	}
	return jb.rec.status(), nil
}

// abandon leaves an interrupted job to Recover.
func (e *Engine) abandon(ctx context.Context, jb *job) (protocol.JobStatus, error) {
	if jb.db != nil {
		jb.db.Close()
		jb.db = nil
	}
	jb.log.Warn("job interrupted; it is recovered when the agent starts again", "state", jb.rec.State.String())
	return jb.rec.status(), ctx.Err()
}

// rollback puts back what ran before: stop the app, roll back every step
// in reverse, start the old release and check its health. It ends the
// job rolled_back, or failed when that does not work. It is idempotent:
// Recover calls it again for a job interrupted while rolling back.
func (e *Engine) rollback(ctx context.Context, jb *job, why string) (protocol.JobStatus, error) {
	if ctx.Err() != nil {
		return e.abandon(ctx, jb)
	}
	reason := jb.rec.Reason
	if reason == "" || jb.rec.State != stRollingBack {
		reason = why
	}
	jb.log.Warn("rolling back", "reason", why)
	if err := e.enter(ctx, jb, change{state: stRollingBack, message: why, reason: reason}); err != nil {
		return jb.rec.status(), err
	}

	var notes []string
	var fatal error
	// Stop whatever runs from current (the new release, or the old one
	// half-stopped). Nothing runs without a current.
	if _, ok, _ := readCurrent(jb.installDir); ok {
		if err := e.cfg.App.Stop(ctx); err != nil {
			notes = append(notes, "stop: "+err.Error())
		}
	}
	// The database first, then the files (see rollbackSteps).
	for _, s := range jb.rollbackSteps() {
		if err := s.rollback(ctx, jb); err != nil {
			fatal = fmt.Errorf("roll back %s: %w", s.state(), err)
			break
		}
	}
	prev := orLink(jb.prevVersion(), jb.rec.PrevLink)
	if fatal == nil && jb.rec.PrevLink != "" {
		if err := e.cfg.App.Start(ctx); err != nil {
			fatal = fmt.Errorf("start %s again: %w", prev, err)
		} else if err := e.healthy(ctx, jb.prevVersion()); err != nil {
			fatal = fmt.Errorf("%s started again but its health check failed: %w", prev, err)
		}
	}
	if fatal != nil && ctx.Err() != nil {
		return e.abandon(ctx, jb)
	}
	if fatal != nil {
		// The site needs a person, who may need the database backup.
		jb.keepBackup = true
	}
	e.cleanup(ctx, jb)

	if fatal != nil {
		msg := "rollback failed: " + fatal.Error()
		if len(notes) > 0 {
			msg += " (" + strings.Join(notes, "; ") + ")"
		}
		if _, err := os.Stat(jb.backupDir()); err == nil {
			msg += "; the database backup is kept in " + jb.backupDir()
		}
		msg += "; the site needs a person"
		jb.log.Error("rollback failed", "err", fatal)
		err := e.enter(ctx, jb, change{state: stFailed, message: msg, result: protocol.ResultFailed, siteFailed: &msg})
		return jb.rec.status(), err
	}
	// The app runs healthy on what ran before (or nothing runs): its
	// schema is the baseline of schema drift again. Before rolled_back,
	// so that a crash here rolls back, and records, again.
	e.recordSchemaAfterJob(ctx, jb, jb.prevVersion())
	msg := fmt.Sprintf("back on %s: it runs and passed its health check", prev)
	if jb.rec.PrevLink == "" {
		msg = "nothing was installed before: removed current and stopped what the job started"
	}
	if len(notes) > 0 {
		msg += " (" + strings.Join(notes, "; ") + ")"
	}
	err := e.enter(ctx, jb, change{state: stRolledBack, message: msg, result: protocol.ResultRolledBack})
	return jb.rec.status(), err
}

// commit records that the new release passed its health check: it is the
// installed version from this transaction on. Then it finishes the
// bookkeeping.
func (e *Engine) commit(ctx context.Context, jb *job) (protocol.JobStatus, error) {
	none := ""
	err := e.enter(ctx, jb, change{
		state:      stCommitted,
		message:    fmt.Sprintf("%s passed its health check", jb.rec.To),
		installed:  &jb.rec.To,
		siteFailed: &none,
		drift:      &none, // a fresh release; CheckDrift looks again
	})
	if err != nil {
		return jb.rec.status(), err
	}
	return e.finishCommit(ctx, jb)
}

// finishCommit runs every step's commit (pruning old releases), cleans up
// and ends the job succeeded. Idempotent: Recover calls it for a job that
// was interrupted in committed.
func (e *Engine) finishCommit(ctx context.Context, jb *job) (protocol.JobStatus, error) {
	for _, s := range jb.steps() {
		if err := s.commit(ctx, jb); err != nil {
			jb.log.Warn("commit bookkeeping", "step", s.state().String(), "err", err)
		}
	}
	e.cleanup(ctx, jb)
	// The new release runs healthy: the schema as it left it (migrated
	// by the job, and by the app itself at start) is the baseline of
	// schema drift. Before finish, so that a crash here finishes the
	// commit, and records, again.
	e.recordSchemaAfterJob(ctx, jb, jb.rec.To)
	if err := e.j.finish(context.WithoutCancel(ctx), jb.rec); err != nil {
		return jb.rec.status(), err
	}
	jb.log.Info("job succeeded")
	if err := e.refresh(ctx); err != nil {
		jb.log.Warn("read status", "err", err)
	}
	return jb.rec.status(), nil
}

// cleanup runs every step's cleanup and removes the download.
func (e *Engine) cleanup(ctx context.Context, jb *job) {
	for _, s := range jb.steps() {
		if err := s.cleanup(ctx, jb); err != nil {
			jb.log.Warn("cleanup", "step", s.state().String(), "err", err)
		}
	}
	if err := cleanupDownloads(jb); err != nil {
		jb.log.Warn("cleanup downloads", "err", err)
	}
	if err := cleanupAhead(jb); err != nil {
		jb.log.Warn("cleanup bundles downloaded ahead", "err", err)
	}
}

// isSHA256 says whether sum is 64 lower-case hex digits.
func isSHA256(sum string) bool {
	b, err := hex.DecodeString(sum)
	return err == nil && len(b) == 32 && strings.ToLower(sum) == sum
}
