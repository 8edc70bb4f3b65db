package engine

import (
	"context"
	"fmt"

	"github.com/dropless/dropless/pkg/protocol"
)

// MaxRecoveries is how many times Recover takes up the same interrupted
// job. Past it the job ends failed without another try, so an agent that
// crashes while recovering (a crash loop) stops somewhere.
const MaxRecoveries = 3

// resume is what Recover does with an interrupted job.
type resume int

const (
	resumeFail     resume = iota // end it failed; the app was not touched
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
		// Failed, not retried: the server sees the job end and may assign
		// a new one; a retry would download again anyway, as nothing
		// staged by the dead process is trusted.
		return resumeFail, fmt.Sprintf("interrupted before the app was touched (the agent stopped during %s)", s)
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
// start, before Run. It does nothing when every job ended. See
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
	if err != nil || rec == nil {
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
		msg := fmt.Sprintf("gave up after %d attempts to recover the job (interrupted during %s each time)", MaxRecoveries, rec.State)
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

	switch action {
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
