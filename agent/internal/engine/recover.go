package engine

import (
	"context"
	"fmt"

	"github.com/dropless/dropless/pkg/protocol"
)

// MaxRecoveries is how many times Recover takes up the same interrupted
// job (counted in the journal: jobs.attempts). Past it the job ends failed
// without another try, so an agent that crashes while recovering (a crash
// loop), or a job whose download is cut by a power loss each time, stops
// somewhere.
const MaxRecoveries = 3

// resume is what Recover does with an interrupted job.
type resume int

const (
	resumeFail     resume = iota // end it failed; the app was not touched
	resumeRetry                  // run it again from the download; the app was not touched
	resumeRollback               // roll back to what ran before
	resumeCommit                 // finish the commit bookkeeping
	resumeEnd                    // it had ended; write its result
)

// recoveryAction maps every persisted state of an unfinished job to what
// Recover does, with the reason it logs and journals. Rolling back is the
// default; a step is never resumed forward, as content staged by a dead
// process is not trusted.
func recoveryAction(s state, to string) (resume, string) {
	switch s {
	case stDownloading, stVerified, stPreflight:
		// The app was not touched: run the job again, as a power cut
		// during a download should not need support to click again.
		// Nothing the dead process downloaded, verified or staged is
		// trusted: the retry downloads (resuming or restarting) and
		// verifies everything again.
		return resumeRetry, fmt.Sprintf("interrupted before the app was touched (the agent stopped during %s)", s)
	case stStopping, stStaging, stBackingUp, stMigrating, stSwitching, stStarting, stHealthCheck:
		// The app may be stopped, half-switched or running unchecked,
		// the database half-migrated: put back what ran before, the
		// database first (from its backup; none yet means Up never ran)
		// and then the files.
		return resumeRollback, fmt.Sprintf("the agent was interrupted during %s", s)
	case stRollingBack:
		// Every step's rollback is idempotent: do it again.
		return resumeRollback, "the agent was interrupted while rolling back; rolling back again"
	case stCommitted:
		// The new release passed its health check and is the installed
		// version already; only bookkeeping (pruning, cleanup) is left.
		return resumeCommit, fmt.Sprintf("%s had passed its health check; finishing the commit", to)
	case stRolledBack, stFailed:
		// Ended states are written with their result in one
		// transaction; this is only defensive.
		return resumeEnd, fmt.Sprintf("the job had ended %s", s)
	}
	return resumeRollback, fmt.Sprintf("unknown state %s in the journal; rolling back", s)
}

// Recover finishes or rolls back the job a previous run of the agent left
// unfinished (a crash, a power loss, a shutdown during a job); call it on
// start, before Run, and again whenever Run returned an error that left a
// job unfinished (ErrJournal, ErrUnfinished): a journal that could not be
// written stops a job where it is, and Recover, once the journal can be
// written again, does what a restart would. It returns an error, and
// Recover may be called again, while the journal still cannot be written. It does nothing when every job ended. See
// recoveryAction for what each state leads to; each recovery counts, and
// past MaxRecoveries the job ends failed.
func (e *Engine) Recover(ctx context.Context) error {
	if !e.runMu.TryLock() {
		return fmt.Errorf("recover: %w", ErrBusy)
	}
	defer e.runMu.Unlock()
	if err := repairCurrent(e.cfg.InstallDir); err != nil {
		e.log.Warn("repair current", "err", err)
	}
	rec, err := e.j.unfinished(ctx)
	if err != nil || rec == nil || rec.Product == AgentProduct {
		// The runner recovers a self-update (agentjob.go).
		return err
	}
	jb := e.newJob(rec)
	// Journal the attempt before acting on it, so a crash during this
	// recovery counts too.
	if err := e.j.bumpAttempts(context.WithoutCancel(ctx), rec); err != nil {
		return err
	}
	action, reason := recoveryAction(rec.State, rec.To)
	jb.log.Warn("recovering an interrupted job", "state", rec.State.String(), "attempt", rec.Attempts, "reason", reason)

	if rec.Attempts > MaxRecoveries {
		msg := fmt.Sprintf("gave up after %d attempts to recover the job (interrupted again, the last time during %s)", MaxRecoveries, rec.State)
		c := change{state: stFailed, message: msg, result: protocol.ResultFailed, reason: msg}
		if rec.State.touchesApp() && rec.State != stCommitted {
			// The app may be down or half-switched, the database
			// half-restored: keep its backup for a person.
			c.siteFailed = &msg
			jb.keepBackup = true
		}
		e.cleanup(ctx, jb)
		return e.enter(ctx, jb, c)
	}

	if action == resumeRetry && e.cfg.Fetcher == nil {
		action = resumeFail // nothing to download with
	}
	switch action {
	case resumeRetry:
		_, err = e.retry(ctx, jb, reason)
	case resumeFail:
		_, err = e.failUntouched(ctx, jb, fmt.Errorf("%s", reason))
	case resumeRollback:
		_, err = e.rollback(ctx, jb, reason)
	case resumeCommit:
		_, err = e.finishCommit(ctx, jb)
	case resumeEnd:
		result := protocol.ResultFailed
		if rec.State == stRolledBack {
			result = protocol.ResultRolledBack
		}
		err = e.enter(ctx, jb, change{state: rec.State, message: reason, result: result})
	}
	if err == nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	return err
}

// retry runs again a job that was interrupted before the app was touched:
// from downloading, with the assignment the journal kept, through every
// check and verification. It journals the retry first, so a crash during
// it counts as another attempt (see MaxRecoveries).
func (e *Engine) retry(ctx context.Context, jb *job, reason string) (protocol.JobStatus, error) {
	jb.assign = jb.rec.assignment()
	msg := fmt.Sprintf("%s: trying again (retry %d of %d), downloading %s", reason, jb.rec.Attempts, MaxRecoveries, jb.rec.Target)
	err := e.enter(ctx, jb, change{state: stDownloading, message: msg, edit: func(r *jobRecord) {
		// Vouched for again by the download.
		r.SHA256, r.Length = "", 0
	}})
	if err != nil {
		return jb.rec.status(), err
	}
	return e.drive(ctx, jb)
}
