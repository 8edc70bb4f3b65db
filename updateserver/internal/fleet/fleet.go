// Package fleet is support's side of the server and the agents' partner:
// enrollment, check-ins (long-polled, so an upgrade reaches a connected
// agent at once), job events, assignments of versions to sites, and the
// sweeper that ends jobs without progress.
package fleet

import (
	"log/slog"
	"regexp"
	"time"

	"github.com/dropless/dropless/updateserver/internal/fault"
	"github.com/dropless/dropless/updateserver/internal/store"
)

// Fleet manages sites and their jobs.
type Fleet struct {
	Store *store.Store
	Log   *slog.Logger
	Now   func() time.Time
	// PollInterval is what agents are told to wait between check-ins.
	PollInterval time.Duration
	// JobTimeout fails a job without progress for this long.
	JobTimeout time.Duration

	hub hub
}

func (f *Fleet) now() time.Time {
	if f.Now != nil {
		return f.Now()
	}
	return time.Now()
}

var nameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

func validName(kind, v string) error {
	if !nameRe.MatchString(v) {
		return fault.New(fault.Invalid, "%s %q is not valid: use lower-case letters, digits, '.', '_' and '-' (at most 64)", kind, v)
	}
	return nil
}
