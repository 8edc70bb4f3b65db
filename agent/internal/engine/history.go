package engine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
)

// JobHistory is one job as the journal keeps it, with its events: what
// `updateagent support-bundle` writes for the vendor's support.
type JobHistory struct {
	protocol.JobStatus
	Product   string           `json:"product"`
	Target    string           `json:"target"`
	Reason    string           `json:"reason,omitempty"`
	Attempts  int              `json:"attempts,omitempty"`
	CreatedAt time.Time        `json:"created_at"`
	EndedAt   time.Time        `json:"ended_at,omitzero"`
	Events    []protocol.Event `json:"events"`
}

// ReadHistory reads the last n jobs (newest first) and their events from
// the journal in dataDir, read-only and without the engine's lock: it is
// safe while the agent runs. No journal: no jobs.
func ReadHistory(dataDir string, n int) ([]JobHistory, error) {
	ctx := context.Background()
	path := filepath.Join(dataDir, JournalName)
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	j, err := openJournalReadOnly(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("read history: %w", err)
	}
	defer j.close()
	if v, err := j.version(ctx); err != nil || v == 0 {
		return nil, err
	}
	rows, err := j.db.QueryContext(ctx, j.selectJob()+" FROM jobs ORDER BY created_at DESC, rowid DESC LIMIT ?", n)
	if err != nil {
		return nil, fmt.Errorf("read history: %w", err)
	}
	var recs []*jobRecord
	for rows.Next() {
		r, err := scanJob(rows)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("read history: %w", err)
		}
		recs = append(recs, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read history: %w", err)
	}
	out := make([]JobHistory, 0, len(recs))
	for _, r := range recs {
		evs, err := j.events(ctx, r.ID)
		if err != nil {
			return nil, err
		}
		out = append(out, JobHistory{
			JobStatus: r.status(), Product: r.Product, Target: r.Target, Reason: r.Reason,
			Attempts: r.Attempts, CreatedAt: r.CreatedAt, EndedAt: r.EndedAt, Events: evs,
		})
	}
	return out, nil
}

// FreeDisk returns the bytes available on the file system holding dir,
// and whether this OS could tell.
func FreeDisk(dir string) (uint64, bool, error) { return freeSpace(dir) }
