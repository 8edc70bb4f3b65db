package cli

// The tuf-client tests' TUF repository is agent/internal/tuftest's.

import (
	"sync/atomic"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/dropless/dropless/agent/internal/tuftest"
)

type testRepo struct {
	*tuftest.Repo
	sent atomic.Int64 // bytes a hook wrote, if it counts them
}

// newTestRepo publishes version 1 of every role, one key per role and no
// targets, then version 2 of targets, snapshot and timestamp with the
// given targets (path -> content) listed by the top-level targets role.
func newTestRepo(t *testing.T, targets map[string][]byte) *testRepo {
	t.Helper()
	r := &testRepo{Repo: tuftest.New(t)}
	for p, data := range targets {
		r.AddTarget(metadata.TARGETS, p, data, nil)
	}
	r.Publish()
	return r
}
