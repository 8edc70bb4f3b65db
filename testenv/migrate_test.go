//go:build e2e && unix

package testenv

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	_ "modernc.org/sqlite"

	"github.com/dropless/dropless/pkg/migrate"
	"github.com/dropless/dropless/pkg/protocol"
)

// The product's migration history, release by release: every bundle holds
// the whole history up to its version.
var history = []struct{ name, up, down string }{
	{"0001_customers", "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL);", "DROP TABLE customers;"},
	{"0002_vat", "ALTER TABLE customers ADD COLUMN vat TEXT NOT NULL DEFAULT '';", "ALTER TABLE customers DROP COLUMN vat;"},
	{"0003_invoices", "CREATE TABLE invoices (id INTEGER PRIMARY KEY, customer INTEGER REFERENCES customers(id));", "DROP TABLE invoices;"},
}

func migrations(n int, mutate func(name string, up, down *string)) map[string]string {
	m := map[string]string{}
	for _, h := range history[:n] {
		up, down := h.up, h.down
		if mutate != nil {
			mutate(h.name, &up, &down)
		}
		m[h.name+".up.sql"] = up
		if down != "" {
			m[h.name+".down.sql"] = down
		}
	}
	return m
}

type dbSite struct {
	*Site
	DB string
}

// newDBSite is a site whose app has a SQLite database the agent migrates,
// installed on 1.0.0 (migration 0001) with two client rows.
func newDBSite(t *testing.T, env *Env) *dbSite {
	t.Helper()
	env.PublishBundle(t, "1.0.0", Bundle{Migrations: migrations(1, nil)})
	dir := t.TempDir()
	db := filepath.Join(dir, "app.db")
	s := env.NewSite(t, "acme-prod", "acme", fmt.Sprintf("[database]\ndriver = \"sqlite\"\ndsn = %q", db))
	s.Upgrade(t, "1.0.0")
	s.AwaitHealthy(t, "1.0.0")
	if j := s.AwaitJob(t); j.Result != protocol.ResultSucceeded {
		t.Fatalf("install: %s %s", j.Result, j.Reason)
	}
	sqlExec(t, db, `INSERT INTO customers (name) VALUES ('Globex'), ('Initech')`)
	return &dbSite{Site: s, DB: db}
}

func sqlExec(t *testing.T, db, q string) {
	t.Helper()
	c, err := sql.Open("sqlite", db)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Exec(q); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func fingerprint(t *testing.T, db string) string {
	t.Helper()
	m, err := migrate.Open(context.Background(), "sqlite", db)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	fp, err := m.Fingerprint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return fp
}

// TestMigrationsUpgradeAndRollback: the client's rows survive an upgrade
// that migrates, and a release that fails its health check after
// migrating leaves schema and rows exactly as they were.
func TestMigrationsUpgradeAndRollback(t *testing.T) {
	t.Parallel()
	env := New(t)
	s := newDBSite(t, env)
	env.PublishBundle(t, "1.1.0", Bundle{Migrations: migrations(2, nil)})
	s.Upgrade(t, "1.1.0")
	s.AwaitHealthy(t, "1.1.0")
	if j := s.AwaitJob(t); j.Result != protocol.ResultSucceeded {
		t.Fatalf("upgrade: %s %s", j.Result, j.Reason)
	}
	sqlExec(t, s.DB, `UPDATE customers SET vat = 'DE123' WHERE name = 'Globex'`) // 0002 ran, rows intact
	before := fingerprint(t, s.DB)

	env.PublishBundle(t, "1.2.0", Bundle{Migrations: migrations(3, nil), Files: map[string]string{"unhealthy": "x"}})
	s.Upgrade(t, "1.2.0")
	j := awaitReason(t, s.Site, "health check failed")
	if j.Result != protocol.ResultRolledBack {
		t.Fatalf("bad release: %s %s", j.Result, j.Reason)
	}
	if !containsState(j, "migrating") {
		t.Errorf("the bad release never migrated, so the restore proved nothing: %s", fmtEvents(j))
	}
	if after := fingerprint(t, s.DB); after != before {
		t.Errorf("database after rollback differs from before the upgrade")
	}
	s.AwaitHealthy(t, "1.1.0")
}

// TestDamagedBackupNotRestored: a database backup whose copy was damaged
// on disk after the backup (one byte flipped, by the release's post-start
// hook, which then fails) is not restored over the database at rollback:
// the job fails, its reason says the backup is damaged and the database
// was not changed, and the database is whole (the migrated one, as it
// was before the refused restore).
func TestDamagedBackupNotRestored(t *testing.T) {
	t.Parallel()
	env := New(t)
	s := newDBSite(t, env)
	flip := fmt.Sprintf(`#!/bin/sh
set -e
f=$(find %q -name %s)
test -n "$f"
size=$(wc -c < "$f")
printf '\377' | dd of="$f" bs=1 seek=$((size - 1)) conv=notrunc 2>/dev/null
echo "damaged $f" >&2
exit 5
`, filepath.Join(s.Data, "backups"), "db.sqlite")
	env.PublishBundle(t, "1.1.0", Bundle{Migrations: migrations(2, nil), Hooks: map[string]string{"post-start": flip}})
	s.Upgrade(t, "1.1.0")
	j := awaitReason(t, s.Site, "is damaged")
	if j.Result == protocol.ResultSucceeded || j.Result == protocol.ResultRolledBack {
		t.Fatalf("a job whose backup was damaged ended %s: %s", j.Result, fmtEvents(j))
	}
	for _, want := range []string{"sha256", "the database was not changed"} {
		if !strings.Contains(j.Reason+fmtEvents(j), want) {
			t.Errorf("the job's reason does not say %q: %s %s", want, j.Reason, fmtEvents(j))
		}
	}
	// The database is the migrated one, untouched by the damaged copy.
	sqlExec(t, s.DB, `UPDATE customers SET vat = 'DE123' WHERE name = 'Globex'`)
	if _, err := os.Stat(s.DB + ".restore-tmp"); err == nil {
		t.Error("the restore's temporary copy is left next to the database")
	}
}

// TestUpgradeRefusals: each of these ends with the site whole on the old
// version (files, database, app) and a reason in history.
func TestUpgradeRefusals(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		bundle  Bundle
		prepare func(t *testing.T, s *dbSite)
		want    string
	}{
		{"checksum-drifted migration (a hand-run drop)", Bundle{Migrations: migrations(2, nil)},
			func(t *testing.T, s *dbSite) {
				sqlExec(t, s.DB, `UPDATE updateagent_migrations SET checksum = 'edited-by-hand' WHERE name = '0001_customers'`)
			}, "0001_customers"},
		{"missing down file", Bundle{Migrations: migrations(2, func(name string, _, down *string) {
			if name == "0002_vat" {
				*down = ""
			}
		})}, nil, "0002_vat"},
		{"pre-stop hook fails", Bundle{Migrations: migrations(2, nil), Hooks: map[string]string{"pre-stop": "#!/bin/sh\necho no maintenance page >&2\nexit 3\n"}}, nil, "pre-stop"},
		{"post-stage hook fails", Bundle{Migrations: migrations(2, nil), Hooks: map[string]string{"post-stage": "#!/bin/sh\nexit 4\n"}}, nil, "post-stage"},
		{"post-start hook fails", Bundle{Migrations: migrations(2, nil), Hooks: map[string]string{"post-start": "#!/bin/sh\nexit 5\n"}}, nil, "post-start"},
		{"SQL error halfway", Bundle{Migrations: migrations(2, func(name string, up, _ *string) {
			if name == "0002_vat" {
				*up = "ALTER TABLE customers ADD COLUMN vat TEXT NOT NULL DEFAULT '';\nINSERT INTO no_such_table VALUES (1);"
			}
		})}, nil, "0002_vat"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := New(t)
			s := newDBSite(t, env)
			if tt.prepare != nil {
				tt.prepare(t, s)
			}
			before := fingerprint(t, s.DB)
			env.PublishBundle(t, "1.1.0", tt.bundle)
			s.Upgrade(t, "1.1.0")
			j := awaitReason(t, s.Site, tt.want)
			if j.Result == protocol.ResultSucceeded {
				t.Fatalf("succeeded: %s", fmtEvents(j))
			}
			if after := fingerprint(t, s.DB); after != before {
				t.Errorf("database changed")
			}
			s.AwaitHealthy(t, "1.0.0")
			cur, _ := os.Readlink(filepath.Join(s.Install, "current"))
			if !strings.HasSuffix(cur, "1.0.0") {
				t.Errorf("current -> %s", cur)
			}
		})
	}
}

// TestDriftedFile: a file changed by hand in the running release is
// reported, shown by the server, and blocks the upgrade until support
// accepts it.
func TestDriftedFile(t *testing.T) {
	t.Parallel()
	env := New(t)
	s := newDBSite(t, env)
	env.PublishBundle(t, "1.1.0", Bundle{Migrations: migrations(2, nil)})
	if err := os.WriteFile(filepath.Join(s.Install, "releases", "1.0.0", "VERSION"), []byte("1.0.0-hotfixed-by-hand\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Restarting the agent makes it look at once.
	s.StopAgent(t)
	s.StartAgent(t)
	Await(t, "drift reported", func() bool { return len(s.Info(t).Drift) > 0 })
	if d := strings.Join(s.Info(t).Drift, "; "); !strings.Contains(d, "VERSION") {
		t.Errorf("drift = %s", d)
	}
	if _, errs, code := env.CLI("upgrade", "--site", s.Name, "--to", "1.1.0", "--now"); code != 1 || !strings.Contains(errs, "--accept-drift") {
		t.Fatalf("upgrade of a drifted site: exit %d %s", code, errs)
	}
	env.MustCLI(t, "upgrade", "--site", s.Name, "--to", "1.1.0", "--now", "--accept-drift")
	s.AwaitHealthy(t, "1.1.0")
}

func containsState(j protocol.Job, state string) bool {
	for _, e := range j.Events {
		if e.State == state {
			return true
		}
	}
	return false
}
