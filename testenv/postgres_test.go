//go:build e2e && unix

package testenv

import (
	"database/sql"
	"os"
	"path/filepath"
	"testing"

	"github.com/dropless/dropless/pkg/dbtest"
	"github.com/dropless/dropless/pkg/protocol"
)

// TestUpgradeOnPostgresStore: a real `updateserver serve --store
// postgres://...` serves a site's install and upgrade end to end; the
// state is in PostgreSQL (no SQLite file in the data directory), and a
// server killed and started again finds it there.
func TestUpgradeOnPostgresStore(t *testing.T) {
	t.Parallel()
	dsn := dbtest.PostgresSchema(t, "e2e") // skips without TEST_POSTGRES_DSN
	env := New(t, Store(dsn))
	env.Publish(t, "1.0.0", Healthy)
	env.Publish(t, "1.1.0", Healthy, "--upgrade-from", ">= 1.0, < 1.1")
	site := env.NewSite(t, "acme-prod", "acme")
	site.Upgrade(t, "1.0.0")
	site.AwaitHealthy(t, "1.0.0")
	if j := site.AwaitJob(t); j.Result != protocol.ResultSucceeded {
		t.Fatalf("install job: %+v", j)
	}
	site.Upgrade(t, "1.1.0")
	site.AwaitHealthy(t, "1.1.0")
	j := site.AwaitJob(t)
	if j.Result != protocol.ResultSucceeded || j.From != "1.0.0" || j.To != "1.1.0" {
		t.Fatalf("upgrade job: %+v", j)
	}
	checkSeq(t, j)

	if _, err := os.Stat(filepath.Join(env.Data, "updateserver.db")); !os.IsNotExist(err) {
		t.Errorf("the data directory has a SQLite store (%v): the state belongs in PostgreSQL", err)
	}
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if rows := dbtest.Rows(t, db, `SELECT to_version, result FROM jobs ORDER BY rowid`); len(rows) != 2 || rows[1] != "1.1.0|succeeded" {
		t.Fatalf("jobs in PostgreSQL: %v", rows)
	}

	env.StopServer(t)
	env.StartServer(t)
	if st := site.Info(t); st.InstalledVersion != "1.1.0" || st.State != protocol.StateIdle {
		t.Fatalf("site after the server restarted: %+v", st)
	}
	if h := site.History(t); len(h) != 2 || h[0].ID != j.ID {
		t.Fatalf("history after the server restarted: %+v", h)
	}
}
