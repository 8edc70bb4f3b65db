package engine

// The agent's own upgrade (product updateagent) is journaled here like any
// job: one row in jobs, its events delivered to the server, reported in
// check-ins, and at most one unfinished job of any product at a time, so
// an app upgrade and a self-update never overlap. What the steps do
// (download, swap, trial, rollback) is agent/internal/selfupdate's and the
// runner's; the engine only journals the states and applies the trust
// rules (trust.go) with product updateagent and the running agent's
// version as the installed one. Recover leaves an unfinished agent job
// alone: the runner recovers it before anything else, as only it knows
// which binary runs and where the old one is kept.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/dropless/dropless/pkg/protocol"
)

// AgentProduct is the agent itself as a product: releases of it hold one
// binary per platform, files/<GOOS>_<GOARCH>/updateagent.
const AgentProduct = "updateagent"

// AgentJob is a self-update job in the journal.
type AgentJob struct {
	e  *Engine
	jb *job
}

// ID, From (the running agent's version when it began), To and State
// (a protocol.State* name) describe the job.
func (aj *AgentJob) ID() string    { return aj.jb.rec.ID }
func (aj *AgentJob) From() string  { return aj.jb.rec.From }
func (aj *AgentJob) To() string    { return aj.jb.rec.To }
func (aj *AgentJob) State() string { return aj.jb.rec.State.String() }

// Assignment is what the server asked for.
func (aj *AgentJob) Assignment() protocol.Assignment { return aj.jb.rec.assignment() }

// StartAgentJob journals a new self-update job from running (the agent's
// own version) to a.Version, in state downloading. It refuses while
// another job, of any product, is unfinished (ErrUnfinished); a job ID
// that already ended is returned with ended true and not started again.
func (e *Engine) StartAgentJob(ctx context.Context, a protocol.Assignment, running string) (aj *AgentJob, ended bool, err error) {
	if err := checkAssignment(a); err != nil {
		return nil, false, err
	}
	switch rec, err := e.j.job(ctx, a.JobID); {
	case err == nil && rec.ended():
		return &AgentJob{e: e, jb: e.newJob(rec)}, true, nil
	case err == nil:
		return nil, false, fmt.Errorf("job %s is unfinished: %w", rec.ID, ErrUnfinished)
	case !errors.Is(err, errNoJob):
		return nil, false, err
	}
	rec := &jobRecord{ID: a.JobID, Product: AgentProduct, From: running, To: a.Version, Target: a.Target, State: stDownloading, Assign: a}
	if err := e.j.createJob(ctx, rec, "downloading "+a.Target); err != nil {
		return nil, false, err
	}
	if err := e.refresh(ctx); err != nil {
		e.log.Warn("read status", "err", err)
	}
	return &AgentJob{e: e, jb: e.newJob(rec)}, false, nil
}

// UnfinishedAgentJob returns the unfinished self-update job, or nil when
// there is none (or the unfinished job is the app's).
func (e *Engine) UnfinishedAgentJob(ctx context.Context) (*AgentJob, error) {
	rec, err := e.j.unfinished(ctx)
	if err != nil || rec == nil || rec.Product != AgentProduct {
		return nil, err
	}
	return &AgentJob{e: e, jb: e.newJob(rec)}, nil
}

// Enter journals (and syncs) the job's move to state st (a protocol.State*
// name) with message, before the step's action; the failpoint of st, if
// set, stops the process right after.
func (aj *AgentJob) Enter(ctx context.Context, st, message string) error {
	s, ok := parseState(st)
	if !ok {
		return fmt.Errorf("agent job %s: unknown state %q", aj.ID(), st)
	}
	return aj.e.enter(ctx, aj.jb, change{state: s, message: message})
}

// End ends the job with result (protocol.Result*), journaling its final
// state: committed for succeeded, rolled_back or failed otherwise; reason
// is the message, and the job's reason unless it succeeded.
func (aj *AgentJob) End(ctx context.Context, result, reason string) error {
	c := change{message: reason, result: result}
	switch result {
	case protocol.ResultSucceeded:
		c.state = stCommitted
	case protocol.ResultRolledBack:
		c.state, c.reason = stRolledBack, reason
	default:
		c.state, c.reason = stFailed, reason
	}
	return aj.e.enter(ctx, aj.jb, c)
}

// CheckAgentTarget applies the trust rules of trust.go to a self-update:
// the assignment and its signed target must be of product updateagent and
// the assigned version, and moving from running (the agent's own version)
// to it must be an upgrade its signed upgrade_from admits, or a downgrade
// both the config (allow_downgrade) and the assignment allow. It returns
// what the Fetcher vouched for. Refusals match ErrUntrusted.
func (e *Engine) CheckAgentTarget(ctx context.Context, a protocol.Assignment, running string) (length int64, sha256hex string, err error) {
	if e.cfg.Fetcher == nil {
		return 0, "", errors.New("engine config: Fetcher is nil")
	}
	p := policy{product: AgentProduct, allowDowngrade: e.cfg.AllowDowngrade}
	if err := p.checkRequest(a); err != nil {
		return 0, "", err
	}
	length, sum, custom, err := e.cfg.Fetcher.Target(ctx, a.Target)
	if err != nil {
		return 0, "", fmt.Errorf("target %s: %w", a.Target, err)
	}
	if err := p.checkSigned(a, running, custom); err != nil {
		return 0, "", err
	}
	return length, sum, nil
}

// DownloadAgentTarget has the Fetcher download and verify the job's
// target to dst.
func (aj *AgentJob) DownloadAgentTarget(ctx context.Context, dst string) error {
	if aj.e.cfg.Fetcher == nil {
		return errors.New("engine config: Fetcher is nil")
	}
	return aj.e.cfg.Fetcher.Download(ctx, aj.jb.rec.Target, dst)
}

// SnapshotJournal writes a consistent copy of the journal to dst (which
// must not exist): what an older agent restores when a newer one, on
// trial, had migrated the journal to a schema the older cannot read.
func (e *Engine) SnapshotJournal(ctx context.Context, dst string) error {
	if _, err := e.j.db.ExecContext(ctx, "VACUUM INTO ?", dst); err != nil {
		return fmt.Errorf("snapshot the journal to %s: %w", dst, err)
	}
	return nil
}

// JournalSchema is the journal schema version this agent writes.
func JournalSchema() int { return len(schema) }

// RestoreJournalIfNewer puts snapshot in place of dataDir's journal when
// the journal's schema is newer than this agent knows (a newer agent on
// trial migrated it, then was rolled back) and snapshot's is not. It
// reports whether it did. Call it before Open.
func RestoreJournalIfNewer(ctx context.Context, dataDir, snapshot string) (bool, error) {
	path := filepath.Join(dataDir, JournalName)
	v, err := fileSchema(ctx, path)
	if err != nil || v <= len(schema) {
		return false, err
	}
	sv, err := fileSchema(ctx, snapshot)
	if err != nil {
		return false, fmt.Errorf("journal schema %d is newer than this agent knows (%d), and its snapshot cannot be read: %w", v, len(schema), err)
	}
	if sv > len(schema) || sv == 0 {
		return false, fmt.Errorf("journal schema %d is newer than this agent knows (%d), and so is its snapshot %s (%d)", v, len(schema), snapshot, sv)
	}
	for _, suffix := range []string{"-wal", "-shm"} {
		if err := os.Remove(path + suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
			return false, err
		}
	}
	if err := os.Rename(snapshot, path); err != nil {
		return false, fmt.Errorf("restore the journal from %s: %w", snapshot, err)
	}
	return true, nil
}

// fileSchema reads a journal file's schema version (0 when absent).
func fileSchema(ctx context.Context, path string) (int, error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(10000)")
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var v int
	err = db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v)
	return v, err
}
