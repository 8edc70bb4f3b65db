package store

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
)

// rowVersion reads site's installed_version straight from the database,
// past every cache and wait of the store.
func rowVersion(t *testing.T, s *Store, site string) string {
	t.Helper()
	var v string
	if err := s.db.QueryRow(`SELECT installed_version FROM sites WHERE site = '` + site + `'`).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// waitingForReports says whether a goroutine waits in reportsWritten.
func waitingForReports() bool {
	buf := make([]byte, 1<<22)
	return strings.Contains(string(buf[:runtime.Stack(buf, true)]), "store.(*Store).reportsWritten(")
}

// TestCheckinAnsweredBeforeItsReportIsWritten: a check-in that carries no
// job is answered while the writer is busy (its report queued, not yet in
// the row), yet a reader of the site that starts after it waits for the
// report and shows it with its time. While 100,000 agents came online,
// each first check-in waited seconds for its report's write, and
// thousands timed out.
func TestCheckinAnsweredBeforeItsReportIsWritten(t *testing.T) {
	s, release := siteReportedThenWriterHeld(t)
	at := time.Now().UTC()
	answered := make(chan error, 1)
	go func() {
		_, err := s.CheckinNoWait(at, "s1", protocol.CheckinRequest{InstalledVersion: "2.0.0", State: protocol.StateIdle})
		answered <- err
	}()
	answeredWithin(t, answered, "the check-in waited for the busy writer")
	if v := rowVersion(t, s, "s1"); v != "1.0.0" {
		t.Fatalf("row holds %q while the writer is held; want the old 1.0.0 (the report queued)", v)
	}
	read := getSiteLater(t, s, "s1")
	for !waitingForReports() && len(read) == 0 {
		runtime.Gosched()
	}
	release()
	st := <-read
	if st.InstalledVersion != "2.0.0" || st.LastSeen == nil || !st.LastSeen.Equal(at) {
		t.Errorf("site read after the check-in was answered: %s last seen %v; want 2.0.0 at %s", st.InstalledVersion, st.LastSeen, at)
	}
	if v := rowVersion(t, s, "s1"); v != "2.0.0" {
		t.Errorf("row holds %q after the reader; want 2.0.0", v)
	}
}

// TestQueuedReportsOfASiteLandInOrder: reports of one site queued
// together (the writer busy) leave the row with the last one, even when
// it repeats the first; the store then knows it and the next check-in
// reporting it writes nothing.
func TestQueuedReportsOfASiteLandInOrder(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	enrollSite(t, s, "s1", "cred-1")
	v1 := protocol.CheckinRequest{InstalledVersion: "1.0.0", State: protocol.StateIdle}
	v2 := protocol.CheckinRequest{InstalledVersion: "2.0.0", State: protocol.StateIdle}
	release := blockWriter(t, s)
	now := time.Now()
	for i, r := range []protocol.CheckinRequest{v1, v2, v2, v1} {
		if _, err := s.CheckinNoWait(now.Add(time.Duration(i)*time.Millisecond), "s1", r); err != nil {
			t.Fatal(err)
		}
	}
	release()
	st, err := s.GetSite(ctx, "s1")
	if err != nil {
		t.Fatal(err)
	}
	if st.InstalledVersion != "1.0.0" || rowVersion(t, s, "s1") != "1.0.0" {
		t.Errorf("after 1.0.0, 2.0.0, 2.0.0, 1.0.0: site shows %s, row %s; want the last, 1.0.0", st.InstalledVersion, rowVersion(t, s, "s1"))
	}
	if s.CheckinWrites("s1", v1) {
		t.Error("the report just written would be written again")
	}
	if !s.CheckinWrites("s1", v2) {
		t.Error("a report the row no longer holds would not be written")
	}
}

// answeredWithin fails t with err's error, or with stuck when ch gives
// nothing within 10 s (a call waiting for something it must not).
func answeredWithin(t *testing.T, ch <-chan error, stuck string) {
	t.Helper()
	select {
	case err := <-ch:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal(stuck)
	}
}

// getSiteLater reads site in a goroutine of its own; the channel gets
// what it read (an error fails t).
func getSiteLater(t *testing.T, s *Store, site string) <-chan protocol.Site {
	read := make(chan protocol.Site, 1)
	go func() {
		st, err := s.GetSite(context.Background(), site)
		if err != nil {
			t.Error(err)
		}
		read <- st
	}()
	return read
}
