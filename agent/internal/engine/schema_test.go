//go:build unix

package engine

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dropless/dropless/agent/internal/config"
	"github.com/dropless/dropless/pkg/protocol"
)

// sqlDrop is a SQL script a client's DBA runs by hand.
var sqlDrop = []string{
	"ALTER TABLE customers ADD COLUMN hotfix_flag INTEGER",
	"CREATE INDEX hotfix_idx ON customers (name)",
	"CREATE TABLE hotfix_audit (id INTEGER)",
	"CREATE VIEW hotfix_view AS SELECT id FROM customers",
}

var sqlDropDrift = []string{
	"schema: added column customers.hotfix_flag",
	"schema: added table hotfix_audit",
	"schema: added index hotfix_idx",
	"schema: added view hotfix_view",
}

// TestSchemaDrift: a column, an index, a table and a view made by hand in
// the client database, on SQLite and PostgreSQL, are each reported by
// name, between jobs and in preflight, and block the upgrade; accepted,
// the upgrade goes ahead and the same changes are not reported again;
// a view changed and a table dropped by hand are reported next.
func TestSchemaDrift(t *testing.T) {
	eachDB(t, func(t *testing.T, s *testSite) {
		ctx := context.Background()
		e := s.open(t)
		s.install(t, e, s.releaseWith(t, "1.0.0", relSpec{Migrations: migrations100}))
		if d, err := e.CheckDrift(ctx); err != nil || len(d) != 0 {
			t.Fatalf("CheckDrift after the install = %q, %v", d, err)
		}
		s.dbExec(t, clientRows...) // rows are not schema
		s.dbExec(t, sqlDrop...)
		if d, err := e.CheckDrift(ctx); err != nil || !slices.Equal(d, sqlDropDrift) {
			t.Fatalf("CheckDrift after a SQL drop =\n%q, %v\nwant\n%q", d, err, sqlDropDrift)
		}
		a := s.releaseWith(t, "1.1.0", relSpec{Migrations: migrations110})
		st, err := e.Run(ctx, a)
		if err != nil || st.Result != protocol.ResultFailed || !strings.HasPrefix(e.Status().LastError, "drift: schema: added column customers.hotfix_flag") {
			t.Fatalf("upgrade over a SQL drop: %+v, %v, %q", st, err, e.Status().LastError)
		}

		a.JobID += "-accepted"
		a.AcceptDrift = true
		if st, err := e.Run(ctx, a); err != nil || st.Result != protocol.ResultSucceeded {
			t.Fatalf("upgrade accepting the drift: %+v, %v, %q", st, err, e.Status().LastError)
		}
		if d, err := e.CheckDrift(ctx); err != nil || len(d) != 0 {
			t.Fatalf("CheckDrift after the accepted upgrade = %q, %v", d, err)
		}

		s.dbExec(t, "DROP VIEW hotfix_view", "CREATE VIEW hotfix_view AS SELECT id, name FROM customers", "DROP TABLE hotfix_audit")
		want := []string{"schema: removed table hotfix_audit", "schema: changed view hotfix_view"}
		if d, err := e.CheckDrift(ctx); err != nil || !slices.Equal(d, want) {
			t.Fatalf("CheckDrift = %q, %v; want %q", d, err, want)
		}
	})
}

// TestSchemaDriftModes: schema_drift = "report" reports a SQL drop in
// lines that do not block the upgrade; "off" says nothing; drift_ignore
// patterns name schema objects too.
func TestSchemaDriftModes(t *testing.T) {
	for _, tt := range []struct {
		mode   string
		ignore []string
		want   []string
	}{
		{mode: config.SchemaDriftReport, want: []string{protocol.DriftReportedOnly + "added column customers.hotfix_flag", protocol.DriftReportedOnly + "added table hotfix_audit"}},
		{mode: config.SchemaDriftOff},
		{mode: config.SchemaDriftBlock, ignore: []string{"hotfix_*", "customers.hotfix_flag"}},
	} {
		t.Run(tt.mode, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s := newSite(t)
			withSQLite(t, s)
			s.Database.SchemaDrift = tt.mode
			s.DriftIgnore = tt.ignore
			e := s.open(t)
			s.install(t, e, s.releaseWith(t, "1.0.0", relSpec{Migrations: migrations100}))
			s.dbExec(t, sqlDrop[0], sqlDrop[2])
			if d, err := e.CheckDrift(ctx); err != nil || !slices.Equal(d, tt.want) {
				t.Fatalf("CheckDrift = %q, %v; want %q", d, err, tt.want)
			}
			if st, err := e.Run(ctx, s.releaseWith(t, "1.1.0", relSpec{Migrations: migrations110})); err != nil || st.Result != protocol.ResultSucceeded {
				t.Fatalf("upgrade: %+v, %v, %q", st, err, e.Status().LastError)
			}
			if _, err := os.Stat(filepath.Join(s.DataDir, schemaFile)); (tt.mode == config.SchemaDriftOff) != errors.Is(err, fs.ErrNotExist) {
				t.Errorf("schema recorded with schema_drift = %s: %v", tt.mode, err)
			}
		})
	}
}

// recordedSchema is the release whose schema the agent recorded as the
// baseline of schema drift, "" for none.
func recordedSchema(t *testing.T, s *testSite) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.DataDir, schemaFile))
	if errors.Is(err, fs.ErrNotExist) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	var base schemaBaseline
	if err := json.Unmarshal(b, &base); err != nil {
		t.Fatalf("%s: %v", schemaFile, err)
	}
	return base.Version
}
