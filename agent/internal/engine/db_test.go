//go:build unix

package engine

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dropless/dropless/agent/internal/config"
	"github.com/dropless/dropless/pkg/migrate"
	"github.com/dropless/dropless/pkg/protocol"
)

var dbHappyStates = []string{
	protocol.StateDownloading, protocol.StateVerified, protocol.StatePreflight, protocol.StateStopping,
	protocol.StateStaging, protocol.StateBackingUp, protocol.StateMigrating, protocol.StateSwitching,
	protocol.StateStarting, protocol.StateHealthCheck, protocol.StateCommitted,
}

// An upgrade applies the migrations the database has not seen; the
// client's rows survive.
func TestMigrationsUpgrade(t *testing.T) {
	eachDB(t, func(t *testing.T, s *testSite) {
		e := s.open(t)
		s.install(t, e, s.releaseWith(t, "1.0.0", relSpec{Migrations: migrations100}))
		if got, want := s.dbRecords(t), []string{"0001_create_customers@1.0.0", "0002_add_email@1.0.0"}; !slices.Equal(got, want) {
			t.Fatalf("after 1.0.0 the database records %v, want %v", got, want)
		}
		s.dbExec(t, clientRows...)

		a := s.releaseWith(t, "1.1.0", relSpec{Migrations: migrations110})
		s.install(t, e, a)
		s.checkConsistent(t, e, "1.1.0")
		want := []string{"0001_create_customers@1.0.0", "0002_add_email@1.0.0", "0003_orders@1.1.0", "0004_seed_vendor@1.1.0"}
		if got := s.dbRecords(t); !slices.Equal(got, want) {
			t.Errorf("records %v, want %v", got, want)
		}
		if got, want := s.customers(t), []string{"1|alice|alice@example.com", "2|bob|", "1000|vendor|"}; !slices.Equal(got, want) {
			t.Errorf("customers %v, want %v", got, want)
		}
		if !contains(s.dbTables(t), "orders") {
			t.Errorf("no orders table: %v", s.dbTables(t))
		}
		states, evs := checkEvents(t, e, a.JobID)
		if !slices.Equal(states, dbHappyStates) {
			t.Errorf("events %v, want %v", states, dbHappyStates)
		}
		if m := evs[6].Message; !strings.Contains(m, "applying 2 migrations (0003_orders, 0004_seed_vendor)") {
			t.Errorf("migrating says %q", m)
		}
		if b := s.backups(t); len(b) != 0 {
			t.Errorf("backups left behind: %v", b)
		}
		// The release dir holds the bundle's files/ only; the migrations
		// are kept in the data dir.
		if _, err := os.Stat(filepath.Join(s.InstallDir, "releases", "1.1.0", "migrations")); err == nil {
			t.Error("migrations/ in the release dir")
		}
		if _, err := os.Stat(filepath.Join(s.DataDir, "releases", "1.1.0", "migrations", "0004_seed_vendor.up.sql")); err != nil {
			t.Errorf("the release's migrations are not kept: %v", err)
		}
		if d, err := e.CheckDrift(context.Background()); err != nil || len(d) != 0 {
			t.Errorf("CheckDrift after a clean upgrade = %v, %v", d, err)
		}
	})
}

// A release that fails its health check is rolled back: the database
// exactly as before (schema and rows), then the files, then the old
// release healthy.
func TestBadReleaseRestoresDatabase(t *testing.T) {
	eachDB(t, func(t *testing.T, s *testSite) {
		e := s.open(t)
		s.install(t, e, s.releaseWith(t, "1.0.0", relSpec{Migrations: migrations100}))
		s.dbExec(t, clientRows...)
		before := s.dbFingerprint(t)

		a := s.releaseWith(t, "1.1.0", relSpec{Opts: []string{"bad"}, Migrations: migrations110})
		st, err := e.Run(context.Background(), a)
		if err != nil || st.Result != protocol.ResultRolledBack {
			t.Fatalf("Run = %+v, %v; want rolled_back", st, err)
		}
		s.checkConsistent(t, e, "1.0.0")
		if got := s.dbFingerprint(t); got != before {
			t.Errorf("database fingerprint %s after the rollback, %s before", got, before)
		}
		if got := s.customers(t); !slices.Equal(got, []string{"1|alice|alice@example.com", "2|bob|"}) {
			t.Errorf("customers %v", got)
		}
		states, _ := checkEvents(t, e, a.JobID)
		want := append(slices.Clone(dbHappyStates[:10]), protocol.StateRollingBack, protocol.StateRolledBack)
		if !slices.Equal(states, want) {
			t.Errorf("events %v, want %v", states, want)
		}
		if b := s.backups(t); len(b) != 0 {
			t.Errorf("backups left behind: %v", b)
		}
		if got := s.releases(t); !slices.Equal(got, []string{"1.0.0"}) {
			t.Errorf("releases/ holds %v", got)
		}
	})
}

// Every way a job can fail leaves the site whole on the old version: its
// files, its database (fingerprint), the app healthy; the job's events
// say why.
func TestFailuresKeepSiteWhole(t *testing.T) {
	failing := func(hook string) map[string]string {
		return map[string]string{hook: "#!/bin/sh\necho starting $0\necho \"boom from " + hook + "\" >&2\nexit 3\n"}
	}
	tests := []struct {
		name string
		// setup changes the site (1.0.0 installed, client rows written)
		// and returns the assignment; undo puts back a hand change
		// before the site is checked.
		setup      func(t *testing.T, s *testSite) protocol.Assignment
		undo       func(t *testing.T, s *testSite)
		wantResult string
		wantReason string
		wantDrift  string // in Status.Drift
	}{
		{
			name: "migration checksum drift",
			setup: func(t *testing.T, s *testSite) protocol.Assignment {
				s.dbExec(t, "UPDATE updateagent_migrations SET checksum = 'f00d' WHERE id = 2")
				return s.releaseWith(t, "1.1.0", relSpec{Migrations: migrations110})
			},
			wantResult: protocol.ResultFailed,
			wantReason: "drift: migration 0002_add_email: checksum differs from release 1.0.0",
			wantDrift:  "migration 0002_add_email: checksum differs from release 1.0.0",
		},
		{
			name: "migration checksum drift, drift accepted",
			setup: func(t *testing.T, s *testSite) protocol.Assignment {
				s.dbExec(t, "UPDATE updateagent_migrations SET checksum = 'f00d' WHERE id = 2")
				a := s.releaseWith(t, "1.1.0", relSpec{Migrations: migrations110})
				a.AcceptDrift = true
				return a
			},
			wantResult: protocol.ResultFailed,
			wantReason: "preflight: database: migration drift: 0002_add_email was applied with checksum f00d",
		},
		{
			name: "file modified",
			setup: func(t *testing.T, s *testSite) protocol.Assignment {
				writeFile(t, filepath.Join(s.InstallDir, "releases", "1.0.0", "lib", "data.txt"), "patched by hand\n")
				return s.releaseWith(t, "1.1.0", relSpec{Migrations: migrations110})
			},
			undo: func(t *testing.T, s *testSite) {
				writeFile(t, filepath.Join(s.InstallDir, "releases", "1.0.0", "lib", "data.txt"), strings.Repeat("payload of 1.0.0\n", 100))
			},
			wantResult: protocol.ResultFailed,
			wantReason: "drift: modified: lib/data.txt (1 changes by hand to the running 1.0.0)",
			wantDrift:  "modified: lib/data.txt",
		},
		{
			name: "file added",
			setup: func(t *testing.T, s *testSite) protocol.Assignment {
				writeFile(t, filepath.Join(s.InstallDir, "releases", "1.0.0", "bin", "hotfix.dll"), "MZ")
				return s.releaseWith(t, "1.1.0", relSpec{Migrations: migrations110})
			},
			wantResult: protocol.ResultFailed,
			wantReason: "drift: added: bin/hotfix.dll",
			wantDrift:  "added: bin/hotfix.dll",
		},
		{
			name: "file removed",
			setup: func(t *testing.T, s *testSite) protocol.Assignment {
				if err := os.Remove(filepath.Join(s.InstallDir, "releases", "1.0.0", "bin", "readme.md")); err != nil {
					t.Fatal(err)
				}
				return s.releaseWith(t, "1.1.0", relSpec{Migrations: migrations110})
			},
			undo: func(t *testing.T, s *testSite) {
				writeFile(t, filepath.Join(s.InstallDir, "releases", "1.0.0", "bin", "readme.md"), "the app binary is outside the bundle in this test\n")
			},
			wantResult: protocol.ResultFailed,
			wantReason: "drift: removed: bin/readme.md",
			wantDrift:  "removed: bin/readme.md",
		},
		{
			name: "missing down file",
			setup: func(t *testing.T, s *testSite) protocol.Assignment {
				return s.releaseWith(t, "1.1.0", relSpec{Migrations: withoutMigrations(migrations110, "0003_orders.down.sql")})
			},
			wantResult: protocol.ResultFailed,
			wantReason: "the bundle has no 0003_orders.down.sql, so a failed upgrade could not be undone",
		},
		{
			name: "irreversible without permission",
			setup: func(t *testing.T, s *testSite) protocol.Assignment {
				return s.releaseWith(t, "1.1.0", relSpec{Manifest: "irreversible = true\n", Migrations: withoutMigrations(migrations110, "0003_orders.down.sql")})
			},
			wantResult: protocol.ResultFailed,
			wantReason: "the bundle marks its migrations irreversible",
		},
		{
			name: "downgrade without permission",
			setup: func(t *testing.T, s *testSite) protocol.Assignment {
				return s.releaseWith(t, "0.9.0", relSpec{})
			},
			wantResult: protocol.ResultFailed,
			wantReason: "refused: acme-erp 0.9.0 is older than the installed 1.0.0 and this agent's config does not allow downgrades",
		},
		{
			name: "pre-stop hook fails",
			setup: func(t *testing.T, s *testSite) protocol.Assignment {
				return s.releaseWith(t, "1.1.0", relSpec{Migrations: migrations110, Hooks: failing("pre-stop")})
			},
			wantResult: protocol.ResultRolledBack,
			wantReason: "stopping failed: hook pre-stop exited 3: starting ",
		},
		{
			name: "post-stage hook fails",
			setup: func(t *testing.T, s *testSite) protocol.Assignment {
				return s.releaseWith(t, "1.1.0", relSpec{Migrations: migrations110, Hooks: failing("post-stage")})
			},
			wantResult: protocol.ResultRolledBack,
			wantReason: "staging failed: hook post-stage exited 3: ",
		},
		{
			name: "post-start hook fails",
			setup: func(t *testing.T, s *testSite) protocol.Assignment {
				return s.releaseWith(t, "1.1.0", relSpec{Migrations: migrations110, Hooks: failing("post-start")})
			},
			wantResult: protocol.ResultRolledBack,
			wantReason: "starting failed: hook post-start exited 3: ",
		},
		{
			name: "hook times out",
			setup: func(t *testing.T, s *testSite) protocol.Assignment {
				return s.releaseWith(t, "1.1.0", relSpec{Manifest: "[hooks]\ntimeout = \"1s\"\n", Migrations: migrations110,
					Hooks: map[string]string{"post-stage": "#!/bin/sh\necho waiting\nsleep 60 &\nsleep 60\n"}})
			},
			wantResult: protocol.ResultRolledBack,
			wantReason: "staging failed: hook post-stage did not finish within 1s ([hooks] timeout of the bundle): killed it and its child processes: waiting",
		},
		{
			name: "migration fails halfway",
			setup: func(t *testing.T, s *testSite) protocol.Assignment {
				return s.releaseWith(t, "1.1.0", relSpec{Migrations: withMigrations(migrations110, badMigration)})
			},
			wantResult: protocol.ResultRolledBack,
			wantReason: "migrating failed: migration 0005_bad.up.sql failed",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			eachDB(t, func(t *testing.T, s *testSite) {
				ctx := context.Background()
				e := s.open(t)
				s.install(t, e, s.releaseWith(t, "1.0.0", relSpec{Migrations: migrations100}))
				s.dbExec(t, clientRows...)
				a := tt.setup(t, s)
				before := s.dbFingerprint(t)
				pid := s.pid()

				st, err := e.Run(ctx, a)
				if err != nil || st.Result != tt.wantResult {
					t.Fatalf("Run = %+v, %v; want %s (last error %q)", st, err, tt.wantResult, e.Status().LastError)
				}
				status := e.Status()
				if !strings.Contains(status.LastError, tt.wantReason) {
					t.Errorf("LastError %q, want it to contain %q", status.LastError, tt.wantReason)
				}
				if strings.HasPrefix(tt.wantReason, "drift:") && !strings.HasPrefix(status.LastError, "drift:") {
					t.Errorf("LastError %q does not start with drift:", status.LastError)
				}
				if tt.wantDrift != "" && !slices.Contains(status.Drift, tt.wantDrift) {
					t.Errorf("Status.Drift %q, want it to list %q", status.Drift, tt.wantDrift)
				}
				states, evs := checkEvents(t, e, a.JobID)
				found := false
				for _, ev := range evs {
					found = found || strings.Contains(ev.Message, tt.wantReason)
				}
				if !found {
					t.Errorf("no event says %q: %+v", tt.wantReason, evs)
				}
				if tt.wantResult == protocol.ResultFailed {
					if slices.Contains(states, protocol.StateStopping) || s.pid() != pid {
						t.Errorf("the app was touched: events %v, pid %s (was %s)", states, s.pid(), pid)
					}
				}
				if got := s.dbFingerprint(t); got != before {
					t.Errorf("database fingerprint %s after the job, %s before", got, before)
				}
				if got := s.customers(t); !slices.Equal(got, []string{"1|alice|alice@example.com", "2|bob|"}) {
					t.Errorf("customers %v", got)
				}
				if tt.undo != nil {
					tt.undo(t, s)
				}
				s.checkConsistent(t, e, "1.0.0")
				if b := s.backups(t); len(b) != 0 {
					t.Errorf("backups left behind: %v", b)
				}
				if got := s.releases(t); !slices.Equal(got, []string{"1.0.0"}) {
					t.Errorf("releases/ holds %v", got)
				}
			})
		})
	}
}

func writeFile(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Migrations without a down migration apply when the manifest marks them
// irreversible and the assignment allows it.
func TestIrreversibleAllowed(t *testing.T) {
	eachDB(t, func(t *testing.T, s *testSite) {
		e := s.open(t)
		s.install(t, e, s.releaseWith(t, "1.0.0", relSpec{Migrations: migrations100}))
		s.dbExec(t, clientRows...)
		a := s.releaseWith(t, "1.1.0", relSpec{Manifest: "irreversible = true\n", Migrations: withoutMigrations(migrations110, "0003_orders.down.sql")})
		a.AllowIrreversible = true
		s.install(t, e, a)
		s.checkConsistent(t, e, "1.1.0")
		if got := s.dbRecords(t); len(got) != 4 {
			t.Errorf("records %v", got)
		}
		_, evs := checkEvents(t, e, a.JobID)
		if m := evs[6].Message; !strings.Contains(m, "irreversible, as the assignment allowed") {
			t.Errorf("migrating says %q", m)
		}
	})
}

// Drift accepted by the assignment: the upgrade proceeds, the new release
// dir is fresh, and the drift is gone.
func TestDriftAccepted(t *testing.T) {
	s := newSite(t)
	e := s.open(t)
	s.install(t, e, s.release(t, "1.0.0"))
	writeFile(t, filepath.Join(s.InstallDir, "releases", "1.0.0", "bin", "hotfix.dll"), "MZ")
	if d, err := e.CheckDrift(context.Background()); err != nil || !slices.Equal(d, []string{"added: bin/hotfix.dll"}) {
		t.Fatalf("CheckDrift = %q, %v", d, err)
	}
	a := s.release(t, "1.1.0")
	a.AcceptDrift = true
	s.install(t, e, a)
	s.checkConsistent(t, e, "1.1.0")
	if d := e.Status().Drift; len(d) != 0 {
		t.Errorf("Status.Drift after the upgrade = %q", d)
	}
	_, evs := checkEvents(t, e, a.JobID)
	if m := evs[3].Message; !strings.Contains(m, "drift accepted by the assignment: added: bin/hotfix.dll") {
		t.Errorf("stopping says %q", m)
	}
}

// Hooks run in order with their environment; their output reaches the
// log.
func TestHooksRun(t *testing.T) {
	s := newSite(t)
	e := s.open(t)
	s.install(t, e, s.release(t, "1.0.0"))
	log := filepath.Join(s.Dir, "hooks.log")
	script := func(name string) string {
		return "#!/bin/sh\necho \"" + name + " $FROM_VERSION $TO_VERSION $INSTALL_DIR $RELEASE_DIR $DATA_DIR $(pwd) $HOOK_TEST_PARENT\" >> " + log + "\n" +
			"[ -f \"$RELEASE_DIR/VERSION\" ] && echo \"" + name + " sees $(cat \"$RELEASE_DIR/VERSION\")\" >> " + log + "\nexit 0\n"
	}
	t.Setenv("HOOK_TEST_PARENT", "inherited")
	a := s.releaseWith(t, "1.1.0", relSpec{Hooks: map[string]string{
		"pre-stop": script("pre-stop"), "post-stage": script("post-stage"), "post-start": script("post-start"),
	}})
	s.install(t, e, a)
	s.checkConsistent(t, e, "1.1.0")
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	rel := filepath.Join(s.InstallDir, "releases", "1.1.0")
	env := "1.0.0 1.1.0 " + s.InstallDir + " " + rel + " " + s.DataDir + " " + s.InstallDir + " inherited"
	want := "pre-stop " + env + "\npost-stage " + env + "\npost-stage sees 1.1.0\npost-start " + env + "\npost-start sees 1.1.0\n"
	if string(b) != want {
		t.Errorf("hooks wrote\n%s\nwant\n%s", b, want)
	}
	// hooks/ is kept in the data dir, not in the release.
	if _, err := os.Stat(filepath.Join(rel, "hooks")); err == nil {
		t.Error("hooks/ in the release dir")
	}
	_, evs := checkEvents(t, e, a.JobID)
	if m := evs[3].Message; m != "running the pre-stop hook, then stopping 1.0.0" {
		t.Errorf("stopping says %q", m)
	}
}

// A downgrade the config and the assignment allow runs the recorded down
// migrations of what the older release lacks, then switches the files.
func TestDowngrade(t *testing.T) {
	eachDB(t, func(t *testing.T, s *testSite) {
		s.AllowDowngrade = true
		e := s.open(t)
		a1 := s.releaseWith(t, "1.0.0", relSpec{Migrations: migrations100})
		s.install(t, e, a1)
		s.dbExec(t, clientRows...)
		s.install(t, e, s.releaseWith(t, "1.1.0", relSpec{Migrations: migrations110}))

		back := a1
		back.JobID = "job-downgrade"
		back.AllowDowngrade = true
		s.install(t, e, back)
		s.checkConsistent(t, e, "1.0.0")
		if got, want := s.dbRecords(t), []string{"0001_create_customers@1.0.0", "0002_add_email@1.0.0"}; !slices.Equal(got, want) {
			t.Errorf("records %v, want %v", got, want)
		}
		if contains(s.dbTables(t), "orders") {
			t.Error("orders is still there")
		}
		if got := s.customers(t); !slices.Equal(got, []string{"1|alice|alice@example.com", "2|bob|"}) {
			t.Errorf("customers %v", got)
		}
		_, evs := checkEvents(t, e, back.JobID)
		if m := evs[6].Message; !strings.Contains(m, "taking down 2 migrations the older release lacks (0004_seed_vendor, 0003_orders)") {
			t.Errorf("migrating says %q", m)
		}
	})
}

// A bundle's [health] replaces the agent's health check for its release,
// also when a later job rolls back to it.
func TestHealthOverride(t *testing.T) {
	s := newSite(t)
	e := s.open(t)
	s.install(t, e, s.release(t, "1.0.0"))
	// 1.1.0 answers 503 on /health, but its bundle checks /version.
	a := s.releaseWith(t, "1.1.0", relSpec{Opts: []string{"bad"}, Manifest: "[health]\nurl = \"" + s.url("/version") + "\"\ntimeout = \"3s\"\n"})
	s.install(t, e, a)
	if v, _ := s.running(); v != "1.1.0" {
		t.Fatalf("runs %q", v)
	}
	// 1.2.0 fails the agent's check; back on 1.1.0, its own check passes.
	st, err := e.Run(context.Background(), s.release(t, "1.2.0", "bad"))
	if err != nil || st.Result != protocol.ResultRolledBack {
		t.Fatalf("Run 1.2.0 = %+v, %v (last error %q)", st, err, e.Status().LastError)
	}
	if v, _ := s.running(); v != "1.1.0" || e.Status().InstalledVersion != "1.1.0" || e.Status().State != protocol.StateIdle {
		t.Errorf("after the rollback: runs %q, status %+v", v, e.Status())
	}
}

// A bundle with migrations on an agent without [database], and a database
// that cannot be reached, are refused before the app is touched.
func TestDatabasePreflightRefusals(t *testing.T) {
	tests := []struct {
		name    string
		db      *config.Database
		wantErr string
	}{
		{"no [database]", nil, "preflight: the bundle has 4 migration files but the agent's config has no [database]"},
		{"unreachable", &config.Database{Driver: "postgres", DSN: "postgres://nobody:x@127.0.0.1:1/none?connect_timeout=2"}, "preflight: database unreachable: connect to the PostgreSQL database"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newSite(t)
			e := s.open(t)
			s.install(t, e, s.release(t, "1.0.0"))
			e.Close()
			s.Database = tt.db
			e = s.open(t)
			pid := s.pid()
			st, err := e.Run(context.Background(), s.releaseWith(t, "1.1.0", relSpec{Migrations: migrations100}))
			if err != nil || st.Result != protocol.ResultFailed {
				t.Fatalf("Run = %+v, %v", st, err)
			}
			if got := e.Status().LastError; !strings.HasPrefix(got, tt.wantErr) {
				t.Errorf("LastError %q, want %q", got, tt.wantErr)
			}
			if s.pid() != pid {
				t.Error("the app was restarted")
			}
			s.checkConsistent(t, e, "1.0.0")
		})
	}
}

// A rollback that fails (the old release does not come back healthy)
// ends the job failed, the site failed, and keeps the database backup for
// the person who has to look. The backup is verified as [database]
// backup_verify says (checksum by default).
func TestFailedRollbackKeepsBackup(t *testing.T) {
	for _, verify := range []string{"", config.BackupVerifyFingerprint} {
		t.Run("backup_verify="+verify, func(t *testing.T) { testFailedRollbackKeepsBackup(t, verify) })
	}
}

func testFailedRollbackKeepsBackup(t *testing.T, verify string) {
	s := newSite(t)
	withSQLite(t, s)
	s.Database.BackupVerify = verify
	e := s.open(t)
	s.install(t, e, s.releaseWith(t, "1.0.0", relSpec{Migrations: migrations100}))
	s.dbExec(t, clientRows...)
	before := s.dbFingerprint(t)
	// The old release is broken by hand: it will not pass its health
	// check once restarted.
	writeFile(t, filepath.Join(s.InstallDir, "releases", "1.0.0", "unhealthy"), "")
	a := s.releaseWith(t, "1.1.0", relSpec{Opts: []string{"bad"}, Migrations: migrations110})
	a.AcceptDrift = true
	st, err := e.Run(context.Background(), a)
	if err != nil || st.Result != protocol.ResultFailed {
		t.Fatalf("Run = %+v, %v", st, err)
	}
	status := e.Status()
	if status.State != protocol.StateFailed {
		t.Errorf("State %q, want failed", status.State)
	}
	_, evs := checkEvents(t, e, a.JobID)
	last := evs[len(evs)-1].Message
	backup := filepath.Join(s.DataDir, "backups", a.JobID)
	if !strings.Contains(last, "rollback failed: 1.0.0 started again but its health check failed") || !strings.Contains(last, "the database backup is kept in "+backup) {
		t.Errorf("last event says %q", last)
	}
	data, err := os.ReadFile(filepath.Join(backup, "backup.json"))
	if err != nil {
		t.Errorf("the backup is gone: %v", err)
	}
	var meta struct{ Verify, Fingerprint string }
	if err := json.Unmarshal(data, &meta); err != nil {
		t.Fatal(err)
	}
	wantVerify := verify
	if wantVerify == "" {
		wantVerify = config.BackupVerifyChecksum
	}
	if meta.Verify != wantVerify || (meta.Fingerprint != "") != (wantVerify == config.BackupVerifyFingerprint) {
		t.Errorf("backup verified as %q (fingerprint %q), want %q", meta.Verify, meta.Fingerprint, wantVerify)
	}
	// The database was restored before the old release was started.
	if got := s.dbFingerprint(t); got != before {
		t.Errorf("database fingerprint %s, %s before", got, before)
	}
}

// The database step's rollback works from the backup directory alone and
// may run again (a crash while rolling back): each run leaves the
// database as it was before the job.
func TestDatabaseRollbackIdempotent(t *testing.T) {
	eachDB(t, func(t *testing.T, s *testSite) {
		ctx := context.Background()
		e := s.open(t)
		s.install(t, e, s.releaseWith(t, "1.0.0", relSpec{Migrations: migrations100}))
		s.dbExec(t, clientRows...)
		before := s.dbFingerprint(t)

		// A job in another process got as far as migrating.
		dir := filepath.Join(s.Dir, "m110")
		for name, sql := range migrations110 {
			writeFile(t, filepath.Join(dir, name), sql)
		}
		ms, err := migrate.Load(dir)
		if err != nil {
			t.Fatal(err)
		}
		db, err := migrate.Open(ctx, s.Database.Driver, s.Database.DSN)
		if err != nil {
			t.Fatal(err)
		}
		jb := e.newJob(&jobRecord{ID: "job-crashed", From: "1.0.0", To: "1.1.0"})
		p, err := db.Plan(ctx, ms, migrate.PlanOptions{})
		if err != nil {
			t.Fatal(err)
		}
		b, err := db.Backup(ctx, jb.backupDir(), p)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Up(ctx, p, b, "1.1.0"); err != nil {
			t.Fatal(err)
		}
		db.Close()
		if s.dbFingerprint(t) == before {
			t.Fatal("Up changed nothing")
		}

		// This process rolls back, twice, knowing only the record.
		for i := range 2 {
			if err := (migrateStep{}).rollback(ctx, jb); err != nil {
				t.Fatalf("rollback %d: %v", i+1, err)
			}
			if got := s.dbFingerprint(t); got != before {
				t.Errorf("after rollback %d the fingerprint is %s, %s before", i+1, got, before)
			}
		}
		// No backup (Up never ran): nothing to do.
		other := e.newJob(&jobRecord{ID: "job-without-backup", From: "1.0.0", To: "1.1.0"})
		if err := (migrateStep{}).rollback(ctx, other); err != nil {
			t.Errorf("rollback without a backup: %v", err)
		}
	})
}
