//go:build e2e && unix

package testenv

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
)

// TestSQLDropBlocksUpgrade: a client's DBA runs a SQL script by hand on
// the app's SQLite database (the sqlite3 command); after the agent
// restarts, `sites show` names the column and the index, the upgrade is
// refused until support accepts the drift, and then goes through, and
// the next check-in no longer reports it. The app creates a table of its
// own at start, in each release: never reported.
func TestSQLDropBlocksUpgrade(t *testing.T) {
	t.Parallel()
	sqlite3, err := exec.LookPath("sqlite3")
	if err != nil {
		t.Skip("the sqlite3 command is not installed (CI installs it, see .ci/run)")
	}
	env := New(t)
	selfMigrate := func(table string) map[string]string {
		return map[string]string{"self_migrate.sql": "CREATE TABLE IF NOT EXISTS " + table + " (k TEXT PRIMARY KEY, v TEXT);\n"}
	}
	env.PublishBundle(t, "1.0.0", Bundle{Migrations: migrations(1, nil), Files: selfMigrate("app_settings")})
	env.PublishBundle(t, "1.1.0", Bundle{Migrations: migrations(2, nil), Files: selfMigrate("app_sessions")})
	db := filepath.Join(t.TempDir(), "app.db")
	s := env.PrepareSite(t, "acme-prod", "acme", fmt.Sprintf("[database]\ndriver = \"sqlite\"\ndsn = %q", db))
	s.ExtraEnv = []string{"SAMPLEAPP_DB=" + db}
	s.StartAgent(t)
	Await(t, "site "+s.Name+" checked in", func() bool { return s.Info(t).LastSeen != nil })
	s.Upgrade(t, "1.0.0")
	s.AwaitHealthy(t, "1.0.0")
	if j := s.AwaitJob(t); j.Result != protocol.ResultSucceeded {
		t.Fatalf("install: %s %s", j.Result, j.Reason)
	}
	// The agent checks drift when it starts, before it checks in.
	restart := func() protocol.Site {
		t.Helper()
		s.StopAgent(t)
		since := time.Now()
		s.StartAgent(t)
		var info protocol.Site
		Await(t, "a check-in after the agent restarted", func() bool {
			info = s.Info(t)
			return info.LastSeen != nil && info.LastSeen.After(since)
		})
		return info
	}
	if info := restart(); len(info.Drift) != 0 {
		t.Fatalf("drift after the install (the app made its own table at start): %q", info.Drift)
	}

	out, err := exec.Command(sqlite3, db, "ALTER TABLE customers ADD COLUMN hotfix_flag INTEGER; CREATE INDEX hotfix_idx ON customers(name);").CombinedOutput()
	if err != nil {
		t.Fatalf("sqlite3: %v: %s", err, out)
	}
	want := []string{"schema: added column customers.hotfix_flag", "schema: added index hotfix_idx"}
	if info := restart(); !slices.Equal(info.Drift, want) {
		t.Fatalf("drift after the SQL drop: %q, want %q", info.Drift, want)
	}
	show := env.MustCLI(t, "sites", "show", s.Name)
	for _, w := range want {
		if !strings.Contains(show, w) {
			t.Errorf("sites show does not list %q:\n%s", w, show)
		}
	}
	if _, errs, code := env.CLI("upgrade", "--site", s.Name, "--to", "1.1.0", "--now"); code != 1 || !strings.Contains(errs, "--accept-drift") || !strings.Contains(errs, "schema: added") {
		t.Fatalf("upgrade over the SQL drop: exit %d: %s", code, errs)
	}

	env.MustCLI(t, "upgrade", "--site", s.Name, "--to", "1.1.0", "--now", "--accept-drift")
	s.AwaitHealthy(t, "1.1.0")
	if j := s.AwaitJob(t); j.Result != protocol.ResultSucceeded {
		t.Fatalf("upgrade accepting the drift: %s %s", j.Result, j.Reason)
	}
	if info := restart(); len(info.Drift) != 0 {
		t.Fatalf("drift after the accepted upgrade (and the app's own new table): %q", info.Drift)
	}
	out, err = exec.Command(sqlite3, db, "SELECT name FROM sqlite_schema WHERE name LIKE 'app_%' ORDER BY name").CombinedOutput()
	if err != nil || !slices.Equal(strings.Fields(string(out)), []string{"app_sessions", "app_settings"}) {
		t.Errorf("the tables the app made at start: %q, %v", out, err)
	}
}
