package runner

// The agent's own upgrade, from the runner's side (the steps and their
// order are agent/internal/selfupdate's doc):
//
//   - selfUpdate runs a job of product updateagent up to the trial and
//     leaves a handover for Run: the old agent closes its engine and
//     watches the staged new binary on trial (selfupdate.Trial).
//   - On a healthy trial, handOver swaps the new binary in and
//     re-executes the process as it (the same PID: systemd, SysV's
//     pidfile and launchd see one agent that never stopped; on Windows,
//     where a process cannot be re-executed, the agent exits and the
//     service's recovery action starts it again). Otherwise it records
//     why, and Run opens the engine again as the old agent.
//   - recoverSelfUpdate, on every start, ends an unfinished self-update:
//     the child on trial (TrialEnv names its job) checks in and journals
//     switching; the new binary started after the swap checks in and ends
//     the job succeeded; any other start ends it rolled_back (failed when
//     nothing was staged yet), putting the old binary back should the
//     executable not be the one that proved itself.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/dropless/dropless/agent/internal/engine"
	"github.com/dropless/dropless/agent/internal/selfupdate"
	"github.com/dropless/dropless/pkg/buildinfo"
	"github.com/dropless/dropless/pkg/protocol"
)

// handover is what the loop leaves for Run once the engine is closed.
type handover struct {
	trial   *selfupdate.Record // run the new binary on trial
	restart string             // re-execute this executable (the old binary was put back)
}

// handOver does h: it re-executes the process (and does not return), or
// returns for Run to start the agent again in this process.
func (r *Runner) handOver(ctx context.Context, h handover) {
	if h.restart != "" {
		r.log.Info("self-update: starting the agent again", "exe", h.restart)
		r.restart(h.restart)
		return
	}
	if h.trial == nil {
		return
	}
	rec := *h.trial
	healthy := func() (bool, error) {
		st, err := engine.ReadStatus(r.cfg.DataDir)
		if err != nil {
			return false, err
		}
		return st.CurrentJob != nil && st.CurrentJob.ID == rec.Job && st.CurrentJob.State == protocol.StateSwitching, nil
	}
	err := selfupdate.Trial(ctx, rec, os.Args[1:], r.cfg.SelfUpdateTrial.Duration, healthy, r.log)
	if ctx.Err() != nil {
		return // stopped: the next start rolls back
	}
	if err == nil {
		if err = selfupdate.Swap(rec, rec.Staged); err == nil {
			rec.SwappedAt = time.Now()
			if werr := selfupdate.WriteRecord(r.cfg.DataDir, rec); werr != nil {
				r.log.Warn("self-update: record the swap time", "err", werr)
			}
			r.log.Info("self-update: the new agent checked in healthy and is swapped in; restarting as it", "version", rec.To, "exe", rec.Exe)
			r.restart(rec.Exe)
			return
		}
		err = fmt.Errorf("the new agent %s checked in healthy, but swapping it in failed: %w", rec.To, err)
	}
	r.log.Warn("self-update: the trial failed; the agent goes on as it was", "err", err)
	rec.Failure = err.Error()
	if werr := selfupdate.WriteRecord(r.cfg.DataDir, rec); werr != nil {
		r.log.Error("self-update: cannot record why the trial failed", "err", werr)
	}
	// Run opens the engine again; recoverSelfUpdate ends the job.
}

// restart re-executes exe in place of this process. Where the OS cannot,
// the agent exits non-zero for the service manager to start it again.
func (r *Runner) restart(exe string) {
	err := selfupdate.Restart(exe, os.Args[1:])
	if errors.Is(err, selfupdate.ErrCannotExec) {
		r.log.Warn("self-update: exiting for the service manager to start the agent again")
		os.Exit(1)
	}
	r.log.Error("self-update: cannot re-execute the agent; it goes on as it is", "exe", exe, "err", err)
}

// prepareJournal runs before the engine opens: after a rollback, a
// journal that the new agent migrated to a schema this one does not know
// is replaced by the snapshot taken before the swap.
func (r *Runner) prepareJournal(ctx context.Context) error {
	rec, ok, err := selfupdate.ReadRecord(r.cfg.DataDir)
	if err != nil || !ok {
		return err
	}
	restored, err := engine.RestoreJournalIfNewer(ctx, r.cfg.DataDir, selfupdate.JournalSnapshot(r.cfg.DataDir))
	if err != nil {
		return fmt.Errorf("self-update of job %s: %w", rec.Job, err)
	}
	if restored {
		r.log.Warn("self-update: the new agent had migrated the journal; restored the journal from before the swap", "job", rec.Job)
	}
	return nil
}

// recoverSelfUpdate ends an unfinished self-update on start (see the
// file's doc). It returns a handover when another binary must be started
// in place of this one.
func (r *Runner) recoverSelfUpdate(ctx context.Context) (*handover, error) {
	aj, err := r.engine.UnfinishedAgentJob(ctx)
	if err != nil {
		return nil, err
	}
	rec, haveRec, rerr := selfupdate.ReadRecord(r.cfg.DataDir)
	if rerr != nil {
		r.log.Warn("self-update: unreadable record", "err", rerr)
	}
	if aj == nil {
		if haveRec || rerr != nil {
			selfupdate.Clean(r.cfg.DataDir)
		}
		return nil, nil
	}
	running := buildinfo.String()
	log := r.log.With("job", aj.ID(), "from", aj.From(), "to", aj.To())
	if !haveRec || rec.Job != aj.ID() {
		msg := fmt.Sprintf("the agent was interrupted during %s, before the new agent was tried; it still runs %s: upgrade it again", aj.State(), aj.From())
		log.Warn("self-update: " + msg)
		selfupdate.Clean(r.cfg.DataDir)
		return nil, aj.End(ctx, protocol.ResultFailed, msg)
	}
	exeSum, _ := selfupdate.FileSHA256(rec.Exe)
	switch {
	case os.Getenv(selfupdate.TrialEnv) == aj.ID() && running == aj.To() && aj.State() == protocol.StateStarting:
		// The new binary on trial.
		r.trial = &trial{job: aj, rec: rec}
		return nil, nil
	case aj.State() == protocol.StateSwitching && rec.Failure == "" && exeSum == rec.NewSHA256:
		if running != aj.To() {
			return &handover{restart: rec.Exe}, nil // the proven binary is in place: run it
		}
		// Swapped in and started: check in, then end the job.
		r.trial = &trial{job: aj, rec: rec, swapped: true}
		return nil, nil
	}
	reason := rec.Failure
	if reason == "" {
		reason = fmt.Sprintf("the agent was interrupted during %s", aj.State())
	}
	if _, err := selfupdate.Restore(rec); err != nil {
		msg := reason + "; " + err.Error()
		log.Error("self-update: " + msg)
		return nil, aj.End(ctx, protocol.ResultFailed, msg)
	}
	if err := aj.End(ctx, protocol.ResultRolledBack, reason+"; the agent "+rec.From+" goes on"); err != nil {
		return nil, err
	}
	log.Warn("self-update rolled back", "reason", reason)
	selfupdate.Clean(r.cfg.DataDir)
	if running != rec.From {
		return &handover{restart: rec.Exe}, nil
	}
	return nil, nil
}

// trial is a self-update this process, the new binary, proves itself for:
// on trial (journals switching once it checked in) or swapped in (ends
// the job succeeded once it checked in).
type trial struct {
	job     *engine.AgentJob
	rec     selfupdate.Record
	swapped bool
}

// proveHealthy checks in with the server, reporting this agent's version,
// until that works or ctx ends, then journals the trial's outcome (see
// trial). The old agent watching a trial sees it in the journal.
func (r *Runner) proveHealthy(ctx context.Context) {
	t := r.trial
	r.trial = nil
	aj := t.job
	start := time.Now()
	if !t.swapped {
		if err := aj.Enter(ctx, protocol.StateHealthCheck, fmt.Sprintf("the new agent %s started on trial (pid %d); checking in", aj.To(), os.Getpid())); err != nil {
			r.log.Error("self-update: journal", "err", err)
			return
		}
		go exitWithParent(ctx, r.log)
	}
	bo := backoff{min: 250 * time.Millisecond, max: 5 * time.Second}
	for ctx.Err() == nil {
		err := r.ensureCredential(ctx)
		if err == nil {
			_, err = r.api.Checkin(ctx, r.checkinRequest(r.engine.Status()), 0)
		}
		r.recordContact(err, false)
		if err == nil {
			break
		}
		r.logThrottled(&r.refusedLogged, "self-update: the new agent cannot check in yet", err)
		sleep(ctx, bo.next())
	}
	if ctx.Err() != nil {
		return
	}
	var err error
	if t.swapped {
		msg := fmt.Sprintf("agent %s runs and checked in", aj.To())
		if !t.rec.SwappedAt.IsZero() {
			msg += fmt.Sprintf(", %s after the swap", time.Since(t.rec.SwappedAt).Round(time.Millisecond))
		}
		if err = aj.End(ctx, protocol.ResultSucceeded, msg); err == nil {
			selfupdate.Clean(r.cfg.DataDir) // the old binary stays beside the executable
		}
		r.log.Info("self-update: " + msg)
	} else {
		msg := fmt.Sprintf("the new agent %s checked in healthy, %s after it started; swapping it in", aj.To(), time.Since(start).Round(time.Millisecond))
		// switching, not committed: the server ends a job on committed,
		// and this one is not done before the swap.
		err = aj.Enter(ctx, protocol.StateSwitching, msg)
		r.log.Info("self-update: " + msg)
	}
	if err != nil {
		r.log.Error("self-update: journal", "err", err)
	}
}

// exitWithParent ends a new agent on trial when the old agent watching it
// is gone (where the OS did not already kill it with its parent): it must
// not keep the data dir from the agent the service manager starts next.
func exitWithParent(ctx context.Context, log *slog.Logger) {
	parent := os.Getppid()
	for ctx.Err() == nil {
		if os.Getppid() != parent {
			log.Warn("self-update: the old agent watching this trial is gone; exiting")
			os.Exit(1)
		}
		sleep(ctx, 250*time.Millisecond)
	}
}

// flushEvents sends the journal's pending events once, briefly: before
// the engine closes for a trial, so that the server sees the job's steps.
func (r *Runner) flushEvents(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	evs, err := r.engine.PendingEvents(ctx, 200)
	if err != nil || len(evs) == 0 || r.api.CurrentCredential() == "" {
		return
	}
	if _, err := r.api.SendEvents(ctx, evs); err == nil {
		r.engine.MarkDelivered(ctx, evs)
	}
}

// selfUpdate runs a job of product updateagent up to the trial: trust
// checks and download (as for an app upgrade), the binary for this
// platform checked to run and to be the signed version, the journal
// snapshot, the Record. It returns the trial's handover, or nil when the
// job ended (failed) before.
func (r *Runner) selfUpdate(ctx context.Context, a protocol.Assignment) *handover {
	running := buildinfo.String()
	log := r.log.With("job", a.JobID, "from", running, "to", a.Version)
	aj, ended, err := r.engine.StartAgentJob(ctx, a, running)
	if err != nil {
		if ctx.Err() == nil {
			log.Error("self-update could not start", "err", err)
			r.recoverPending = true
		}
		return nil
	}
	if ended {
		return nil
	}
	stop := r.pumpEvents()
	defer stop()
	fail := func(err error) *handover {
		if ctx.Err() != nil {
			return nil // stopped: the next start ends the job
		}
		selfupdate.Clean(r.cfg.DataDir)
		if jerr := aj.End(ctx, protocol.ResultFailed, err.Error()); jerr != nil {
			log.Error("self-update: journal", "err", jerr)
		}
		log.Warn("self-update failed; the agent was not changed", "err", err)
		return nil
	}
	length, sum, err := r.engine.CheckAgentTarget(ctx, a, running)
	if err != nil {
		return fail(err)
	}
	dir := selfupdate.Dir(r.cfg.DataDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fail(err)
	}
	bundlePath := filepath.Join(dir, sum+".tar.gz")
	if err := aj.DownloadAgentTarget(ctx, bundlePath); err != nil {
		return fail(fmt.Errorf("download %s: %w", a.Target, err))
	}
	if err := aj.Enter(ctx, protocol.StateVerified, fmt.Sprintf("sha256 %s, %d bytes", sum, length)); err != nil {
		return fail(err)
	}
	newBin, err := selfupdate.Stage(ctx, bundlePath, r.cfg.DataDir)
	if err != nil {
		return fail(err)
	}
	if err := aj.Enter(ctx, protocol.StatePreflight, "checking that the new agent runs here and is "+a.Version); err != nil {
		return fail(err)
	}
	if err := selfupdate.CheckVersion(ctx, newBin, a.Version); err != nil {
		return fail(err)
	}
	exe, err := executable()
	if err != nil {
		return fail(fmt.Errorf("find the agent's own executable: %w", err))
	}
	oldSum, err := selfupdate.FileSHA256(exe)
	if err != nil {
		return fail(err)
	}
	newSum, err := selfupdate.FileSHA256(newBin)
	if err != nil {
		return fail(err)
	}
	snap := selfupdate.JournalSnapshot(r.cfg.DataDir)
	os.Remove(snap)
	if err := r.engine.SnapshotJournal(ctx, snap); err != nil {
		return fail(err)
	}
	rec := selfupdate.Record{Job: a.JobID, From: running, To: a.Version, Exe: exe, Old: selfupdate.OldPath(exe),
		OldSHA256: oldSum, NewSHA256: newSum, Staged: newBin}
	if err := selfupdate.WriteRecord(r.cfg.DataDir, rec); err != nil {
		return fail(err)
	}
	// Copy the old binary aside now, out of the swap's way.
	if err := selfupdate.KeepOld(rec); err != nil {
		return fail(err)
	}
	if err := aj.Enter(ctx, protocol.StateStarting, fmt.Sprintf("starting agent %s on trial (%s to check in); %s is swapped for it once it did (the old binary is kept at %s)",
		a.Version, r.cfg.SelfUpdateTrial.Duration, exe, rec.Old)); err != nil {
		return nil // the journal could not be written: the next start ends the job
	}
	r.flushEvents(ctx)
	return &handover{trial: &rec}
}

// executable is the agent's own executable, resolved once, when the
// agent starts (after a swap, /proc/self/exe names a deleted file).
var executable = sync.OnceValues(func() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	return filepath.EvalSymlinks(exe)
})
