//go:build e2e && unix

package testenv

import (
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
)

// TestKillAgentAtEveryState kills the real agent (UPDATEAGENT_FAILPOINT:
// it exits at once, no cleanup, on entering the state) at every state of
// an upgrade that migrates a SQLite database and runs hooks, and at the
// rollback of a bad release; restarts it, and checks the whole chain: the
// job ended as expected and history says so, the app is healthy on the old
// or the new version, the database holds exactly that version's migrations
// and the client's rows.
func TestKillAgentAtEveryState(t *testing.T) {
	t.Parallel()
	env := New(t)
	okHooks := map[string]string{
		"pre-stop":   "#!/bin/sh\nexit 0\n",
		"post-stage": "#!/bin/sh\ntest -f \"$RELEASE_DIR/VERSION\"\n",
		"post-start": "#!/bin/sh\nexit 0\n",
	}
	// Release n (1.n.0) holds migrations 0001..000n: migration k creates
	// table tk; 0001 also the client's table customers (a table made by
	// hand would be a SQL drop, and block the upgrades).
	release := func(n int, healthy bool) {
		ms := map[string]string{}
		for k := 1; k <= n; k++ {
			ms[fmt.Sprintf("%04d_t%d.up.sql", k, k)] = fmt.Sprintf("CREATE TABLE t%d (x INTEGER);", k)
			ms[fmt.Sprintf("%04d_t%d.down.sql", k, k)] = fmt.Sprintf("DROP TABLE t%d;", k)
		}
		ms["0001_t1.up.sql"] += " CREATE TABLE customers (name TEXT);"
		ms["0001_t1.down.sql"] += " DROP TABLE customers;"
		files := map[string]string{}
		if !healthy {
			files["unhealthy"] = "x"
		}
		env.PublishBundle(t, fmt.Sprintf("1.%d.0", n), Bundle{Migrations: ms, Hooks: okHooks, Files: files})
	}
	db := filepath.Join(t.TempDir(), "app.db")
	release(1, true)
	site := env.NewSite(t, "acme-prod", "acme", fmt.Sprintf("[database]\ndriver = \"sqlite\"\ndsn = %q", db))
	site.Upgrade(t, "1.1.0")
	site.AwaitHealthy(t, "1.1.0")
	site.AwaitJob(t)
	sqlExec(t, db, `INSERT INTO customers VALUES ('Globex'), ('Initech');`)

	installed := 1 // the n of the running release
	tests := []struct {
		failpoint string
		healthy   bool
		want      string // result after recovery
	}{
		// Before the app was touched: the job runs again and succeeds.
		{"downloading", true, protocol.ResultSucceeded},
		{"verified", true, protocol.ResultSucceeded},
		{"preflight", true, protocol.ResultSucceeded},
		{"stopping", true, protocol.ResultRolledBack},
		{"staging", true, protocol.ResultRolledBack},
		{"backing_up", true, protocol.ResultRolledBack},
		{"migrating", true, protocol.ResultRolledBack},
		{"switching", true, protocol.ResultRolledBack},
		{"starting", true, protocol.ResultRolledBack},
		{"health_check", true, protocol.ResultRolledBack},
		{"committed", true, protocol.ResultSucceeded},
		{"rolling_back", false, protocol.ResultRolledBack},
	}
	next := installed + 1
	for _, tt := range tests {
		t.Run(tt.failpoint, func(t *testing.T) {
			release(next, tt.healthy)
			version := fmt.Sprintf("1.%d.0", next)
			next++
			site.StopAgent(t)
			site.ExtraEnv = []string{"UPDATEAGENT_FAILPOINT=" + tt.failpoint}
			site.StartAgent(t)
			site.Upgrade(t, version)
			if code := site.Agent().Wait(t, 2*time.Minute); code != 3 {
				t.Fatalf("agent exited %d at failpoint %s, want 3", code, tt.failpoint)
			}
			site.ExtraEnv = nil
			site.StartAgent(t)
			j := site.AwaitJob(t)
			if j.Result != tt.want {
				t.Fatalf("after a kill at %s the job ended %s (%s), want %s; events: %s", tt.failpoint, j.Result, j.Reason, tt.want, fmtEvents(j))
			}
			if j.Result == protocol.ResultSucceeded {
				installed = next - 1
			}
			want := fmt.Sprintf("1.%d.0", installed)
			site.AwaitHealthy(t, want)
			checkSeq(t, site.History(t)[0])
			// The database holds exactly the running version's
			// migrations, and the client's rows.
			if got := countRows(t, db, "updateagent_migrations"); got != installed {
				t.Errorf("database has %d migrations recorded, %s needs %d", got, want, installed)
			}
			if got := countRows(t, db, "customers"); got != 2 {
				t.Errorf("client rows: %d, want 2", got)
			}
			if exists := tableExists(t, db, fmt.Sprintf("t%d", next-1)); exists != (j.Result == protocol.ResultSucceeded) {
				t.Errorf("table t%d exists=%t after a %s job", next-1, exists, j.Result)
			}
		})
	}
}

func countRows(t *testing.T, db, table string) int {
	t.Helper()
	c, err := sql.Open("sqlite", db)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var n int
	if err := c.QueryRow("SELECT count(*) FROM " + table).Scan(&n); err != nil {
		t.Fatalf("count %s: %v", table, err)
	}
	return n
}

func tableExists(t *testing.T, db, table string) bool {
	t.Helper()
	c, err := sql.Open("sqlite", db)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var n int
	c.QueryRow("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?", table).Scan(&n)
	return n == 1
}
