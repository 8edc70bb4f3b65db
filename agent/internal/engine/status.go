package engine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/dropless/dropless/pkg/protocol"
)

// Status is what the agent reports about its site: in check-ins and in
// `updateagent status`.
type Status struct {
	// InstalledVersion is the version that passed its health check and
	// runs ("" on a fresh site). During a job it stays the old version
	// until the new one passed; after a rollback it is the old one again.
	InstalledVersion string `json:"installed_version"`
	// State is a protocol.State* name: the running job's state,
	// protocol.StateIdle when no job runs, or protocol.StateFailed while
	// the last rollback failed and the site needs a person.
	State string `json:"state"`
	// CurrentJob is the unfinished job, if any.
	CurrentJob *protocol.JobStatus `json:"current_job,omitempty"`
	// LastJob is the job that ended last, if any.
	LastJob *protocol.JobStatus `json:"last_job,omitempty"`
	// LastError is why the last job failed or rolled back ("" when it
	// succeeded).
	LastError string `json:"last_error,omitempty"`
	// Drift lists what was changed by hand in the running release, as
	// CheckDrift (or the last job's preflight) found it: "modified:
	// bin/app.dll", "added: x.dll", "removed: y.conf", "migration
	// 0003_x: checksum differs from release 1.1.0". Empty when nothing
	// was, or when the agent has no record of the release's bundle.
	Drift []string `json:"drift,omitempty"`
}

// ReadStatus reads the status from the journal in dataDir, read-only, for
// another process than the agent (the `status` command runs while the
// service runs). A data dir without a journal, or with one the agent is
// only creating, gives an idle status with nothing installed.
func ReadStatus(dataDir string) (Status, error) {
	ctx := context.Background()
	path := filepath.Join(dataDir, JournalName)
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return Status{State: protocol.StateIdle}, nil
	} else if err != nil {
		return Status{}, fmt.Errorf("read status: %w", err)
	}
	j, err := openJournalReadOnly(ctx, path)
	if err != nil {
		return Status{}, fmt.Errorf("read status: %w", err)
	}
	defer j.close()
	if v, err := j.version(ctx); err == nil && v == 0 {
		// The agent is creating the journal right now.
		return Status{State: protocol.StateIdle}, nil
	}
	return j.status(ctx)
}

// status reads the Status from the journal.
func (j *journal) status(ctx context.Context) (Status, error) {
	var st Status
	var err error
	if st.InstalledVersion, err = j.siteValue(ctx, keyInstalled); err != nil {
		return Status{}, fmt.Errorf("read status: %w", err)
	}
	siteFailed, err := j.siteValue(ctx, keySiteFailed)
	if err != nil {
		return Status{}, fmt.Errorf("read status: %w", err)
	}
	cur, err := j.unfinished(ctx)
	if err != nil {
		return Status{}, fmt.Errorf("read status: %w", err)
	}
	last, err := j.lastEnded(ctx)
	if err != nil {
		return Status{}, fmt.Errorf("read status: %w", err)
	}
	drift, err := j.siteValue(ctx, keyDrift)
	if err != nil {
		return Status{}, fmt.Errorf("read status: %w", err)
	}
	if st.Drift, err = decodeDrift(drift); err != nil {
		return Status{}, fmt.Errorf("read status: %w", err)
	}
	st.State = protocol.StateIdle
	if siteFailed != "" {
		st.State = protocol.StateFailed
	}
	if cur != nil {
		js := cur.status()
		st.CurrentJob = &js
		st.State = js.State
	}
	if last != nil {
		js := last.status()
		st.LastJob = &js
		if last.Result != protocol.ResultSucceeded {
			st.LastError = last.Reason
		}
	}
	return st, nil
}
