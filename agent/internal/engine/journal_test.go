//go:build unix

package engine

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dropless/dropless/pkg/protocol"
)

func TestEventDelivery(t *testing.T) {
	ctx := context.Background()
	s := newSite(t)
	e := s.open(t)
	a := s.release(t, "1.0.0")
	s.install(t, e, a)

	first, err := e.PendingEvents(ctx, 3)
	if err != nil || len(first) != 3 || first[0].Seq != 1 || first[2].Seq != 3 {
		t.Fatalf("PendingEvents(3) = %+v, %v", first, err)
	}
	if err := e.MarkDelivered(ctx, first); err != nil {
		t.Fatal(err)
	}
	rest, _ := e.PendingEvents(ctx, 100)
	if len(rest) != len(happyStates)-3 || rest[0].Seq != 4 {
		t.Fatalf("after delivering 3: %+v", rest)
	}
	// Delivery survives a restart; new jobs queue behind.
	e.Close()
	e = s.open(t)
	b := s.release(t, "1.1.0")
	s.install(t, e, b)
	all, _ := e.PendingEvents(ctx, 100)
	if len(all) != len(rest)+len(happyStates) || all[0] != rest[0] || all[len(rest)].JobID != b.JobID || all[len(rest)].Seq != 1 {
		t.Fatalf("after reopen: %d events, first %+v", len(all), all[0])
	}
	if err := e.MarkDelivered(ctx, all); err != nil {
		t.Fatal(err)
	}
	// Delivering twice is harmless.
	if err := e.MarkDelivered(ctx, all); err != nil {
		t.Fatal(err)
	}
	if left, _ := e.PendingEvents(ctx, 100); len(left) != 0 {
		t.Fatalf("%d events pending after delivering all", len(left))
	}
}

func TestReadStatus(t *testing.T) {
	s := newSite(t)
	if st, err := ReadStatus(s.DataDir); err != nil || st.State != protocol.StateIdle || st.InstalledVersion != "" {
		t.Fatalf("ReadStatus of a new site = %+v, %v", st, err)
	}
	e := s.open(t)
	s.install(t, e, s.release(t, "1.0.0"))
	if _, err := e.Run(context.Background(), s.release(t, "1.1.0", "bad")); err != nil {
		t.Fatal(err)
	}
	// The engine holds the journal open; another handle reads it.
	st, err := ReadStatus(s.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	if got := e.Status(); !statusEqual(st, got) {
		t.Fatalf("ReadStatus = %+v, engine says %+v", st, got)
	}
	if st.InstalledVersion != "1.0.0" || st.LastJob.Result != protocol.ResultRolledBack || !strings.Contains(st.LastError, "503") {
		t.Errorf("ReadStatus = %+v", st)
	}
}

// TestReadStatusWhileCreated: `status` at the moment the agent has
// created the journal's file but not its tables yet says idle, not
// "no such table".
func TestReadStatusWhileCreated(t *testing.T) {
	s := newSite(t)
	if err := os.MkdirAll(s.DataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.DataDir, JournalName), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if st, err := ReadStatus(s.DataDir); err != nil || st.State != protocol.StateIdle || st.InstalledVersion != "" {
		t.Fatalf("ReadStatus of a journal being created = %+v, %v", st, err)
	}
}

func TestReadStatusAfterClose(t *testing.T) {
	s := newSite(t)
	e := s.open(t)
	s.install(t, e, s.release(t, "1.0.0"))
	want := e.Status()
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := ReadStatus(s.DataDir)
	if err != nil || !statusEqual(st, want) {
		t.Fatalf("ReadStatus after Close = %+v, %v; want %+v", st, err, want)
	}
}

func TestOpenLocksDataDir(t *testing.T) {
	s := newSite(t)
	e := s.open(t)
	if _, err := Open(context.Background(), s.config(nil, "")); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
	e.Close()
	e2, err := Open(context.Background(), s.config(nil, ""))
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	e2.Close()
}

func statusEqual(a, b Status) bool {
	eq := func(x, y *protocol.JobStatus) bool { return (x == nil) == (y == nil) && (x == nil || *x == *y) }
	return a.InstalledVersion == b.InstalledVersion && a.State == b.State && a.LastError == b.LastError &&
		eq(a.CurrentJob, b.CurrentJob) && eq(a.LastJob, b.LastJob)
}

func TestOpenRefusesBadConfig(t *testing.T) {
	s := newSite(t)
	tests := []struct {
		name    string
		edit    func(*Config)
		wantErr string
	}{
		{"relative install dir", func(c *Config) { c.InstallDir = "install" }, "InstallDir"},
		{"same dirs", func(c *Config) { c.DataDir = c.InstallDir }, "must differ"},
		{"keep 1", func(c *Config) { c.KeepReleases = 1 }, "keep at least 2"},
		{"no app", func(c *Config) { c.App = nil }, "App is nil"},
		{"no product", func(c *Config) { c.Product = "" }, "Product is empty"},
		{"bad failpoint", func(c *Config) { c.Failpoint = "healthcheck" }, `failpoint "healthcheck"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := s.config(nil, "")
			tt.edit(&cfg)
			if _, err := Open(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Open = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestOpenRefusesNewerJournal(t *testing.T) {
	s := newSite(t)
	e := s.open(t)
	e.Close()
	db, err := sql.Open("sqlite", filepath.Join(s.DataDir, JournalName))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("PRAGMA user_version = 99"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := Open(context.Background(), s.config(nil, "")); err == nil || !strings.Contains(err.Error(), "journal schema version 99 is newer") {
		t.Fatalf("Open of a newer journal = %v", err)
	}
	if _, err := ReadStatus(s.DataDir); err == nil || !strings.Contains(err.Error(), "newer than this agent knows") {
		t.Fatalf("ReadStatus of a newer journal = %v", err)
	}
}
