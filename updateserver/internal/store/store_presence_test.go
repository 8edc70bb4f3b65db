package store

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
)

// enrollSite enrolls site for client c with credential cred.
func enrollSite(t *testing.T, s *Store, site, cred string) {
	t.Helper()
	ctx := context.Background()
	now := time.Now()
	tok := "tok-" + site + "-" + cred
	if _, err := s.CreateEnrollToken(ctx, now, NewEnrollToken{Secret: tok, Client: "c", Site: site, Replace: true, ExpiresAt: now.Add(time.Hour), Uses: 1, By: "t"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Enroll(ctx, now, tok, protocol.EnrollRequest{Site: site, Client: "c", Product: "p", Hostname: "h"}, cred); err != nil {
		t.Fatal(err)
	}
}

// rawRow reads a site's row straight from the database file, through a
// connection of its own: what a crash would leave.
func rawRow(t *testing.T, path, site string) (state, version, lastSeen string) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var seen sql.NullString
	if err := db.QueryRow(`SELECT state, installed_version, last_seen FROM sites WHERE site = ?`, site).Scan(&state, &version, &seen); err != nil {
		t.Fatal(err)
	}
	return state, version, seen.String
}

// walStat is the size and modification time of the store's write-ahead
// log: any committed write appends to it.
func walStat(t *testing.T, path string) string {
	t.Helper()
	fi, err := os.Stat(path + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%d bytes, modified %s", fi.Size(), fi.ModTime().Format(time.RFC3339Nano))
}

// TestUnchangedCheckinWritesNothing: a check-in that reports what the
// site's row holds commits no write, yet every reader of the site sees
// its time; a check-in that changes something is written at once.
func TestUnchangedCheckinWritesNothing(t *testing.T) {
	sqliteOnly(t) // reads the SQLite file directly
	s, path := openTemp(t)
	if s.Dialect() != SQLite {
		t.Skip("reads the SQLite file itself (its WAL and rows); the code under test is the same on PostgreSQL")
	}
	ctx := context.Background()
	enrollSite(t, s, "s1", "cred1")
	t0 := time.Now().UTC().Truncate(time.Second)
	idle := protocol.CheckinRequest{InstalledVersion: "1.0.0", State: protocol.StateIdle, Hostname: "h"}
	if wrote, err := s.Checkin(ctx, t0, "s1", idle); err != nil || !wrote {
		t.Fatalf("first check-in: wrote %v, %v; want written", wrote, err)
	}
	if st, v, seen := rawRow(t, path, "s1"); st != "idle" || v != "1.0.0" || seen != formatTime(t0) {
		t.Fatalf("row after the first check-in: %s %s %s", st, v, seen)
	}
	before := walStat(t, path)
	var last time.Time
	for i := 1; i <= 5; i++ {
		last = t0.Add(time.Duration(i) * time.Second)
		if wrote, err := s.Checkin(ctx, last, "s1", idle); err != nil || wrote {
			t.Fatalf("unchanged check-in %d: wrote %v, %v", i, wrote, err)
		}
	}
	if after := walStat(t, path); after != before {
		t.Errorf("unchanged check-ins wrote to the store: WAL %s, then %s", before, after)
	}
	if _, _, seen := rawRow(t, path, "s1"); seen != formatTime(t0) {
		t.Errorf("row's last_seen %s, want still %s until flushed", seen, formatTime(t0))
	}
	// Every reader sees the last check-in.
	st, err := s.GetSite(ctx, "s1")
	if err != nil || st.LastSeen == nil || !st.LastSeen.Equal(last) {
		t.Errorf("GetSite last_seen %v (%v), want %s", st.LastSeen, err, last)
	}
	list, err := s.ListSites(ctx, SiteFilter{})
	if err != nil || len(list) != 1 || list[0].LastSeen == nil || !list[0].LastSeen.Equal(last) {
		t.Errorf("ListSites: %+v (%v), want last_seen %s", list, err, last)
	}
	states, err := s.SiteStates(ctx)
	if err != nil || len(states) != 1 || states[0].LastSeen == nil || !states[0].LastSeen.Equal(last) {
		t.Errorf("SiteStates: %+v (%v), want last_seen %s", states, err, last)
	}
	page, err := s.SitesPage(ctx, SitePageQuery{Seen: "online", OnlineSince: last, Limit: 10})
	if err != nil || page.Total != 1 || len(page.Sites) != 1 || !page.Sites[0].Online {
		t.Errorf("online sites since the last check-in: %+v (%v), want s1", page, err)
	}

	// A change is written at once, and so is its time.
	changed := idle
	changed.State = protocol.StateDownloading
	tc := last.Add(time.Second)
	if wrote, err := s.Checkin(ctx, tc, "s1", changed); err != nil || !wrote {
		t.Fatalf("changed check-in: wrote %v, %v", wrote, err)
	}
	if st, _, seen := rawRow(t, path, "s1"); st != "downloading" || seen != formatTime(tc) {
		t.Errorf("row after a change: state %s last_seen %s, want downloading %s", st, seen, formatTime(tc))
	}

	// The flush writes the last unchanged check-in's time.
	tf := tc.Add(time.Second)
	if wrote, err := s.Checkin(ctx, tf, "s1", changed); err != nil || wrote {
		t.Fatalf("unchanged check-in: wrote %v, %v", wrote, err)
	}
	if err := s.FlushSeen(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, seen := rawRow(t, path, "s1"); seen != formatTime(tf) {
		t.Errorf("row after the flush: last_seen %s, want %s", seen, formatTime(tf))
	}
	flushed := walStat(t, path)
	if err := s.FlushSeen(ctx); err != nil {
		t.Fatal(err)
	}
	if again := walStat(t, path); again != flushed {
		t.Errorf("a flush with nothing new wrote: WAL %s, then %s", flushed, again)
	}
}

// TestInstalledVersionSetElsewhereIsWritten: after an offline job's
// report sets the installed version, an agent reporting its old one is
// written again (the row no longer holds its report).
func TestInstalledVersionSetElsewhereIsWritten(t *testing.T) {
	sqliteOnly(t) // reads the SQLite file directly
	s, path := openTemp(t)
	if s.Dialect() != SQLite {
		t.Skip("reads the SQLite file itself (its WAL and rows); the code under test is the same on PostgreSQL")
	}
	ctx := context.Background()
	enrollSite(t, s, "s1", "cred1")
	r := protocol.CheckinRequest{InstalledVersion: "1.0.0", State: protocol.StateIdle}
	if _, err := s.Checkin(ctx, time.Now(), "s1", r); err != nil {
		t.Fatal(err)
	}
	if err := s.WithJobs(ctx, func(t *JobTx) error { return t.SetInstalledVersion("s1", "2.0.0") }); err != nil {
		t.Fatal(err)
	}
	if wrote, err := s.Checkin(ctx, time.Now(), "s1", r); err != nil || !wrote {
		t.Fatalf("check-in after the row changed: wrote %v, %v", wrote, err)
	}
	if _, v, _ := rawRow(t, path, "s1"); v != "1.0.0" {
		t.Errorf("installed_version %s, want the agent's 1.0.0", v)
	}
}

// TestCloseFlushesLastSeen: a store closed gracefully (a server stopped
// by SIGTERM) writes the last check-in times it kept in memory.
func TestCloseFlushesLastSeen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	ctx := context.Background()
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	enrollSite(t, s, "s1", "cred1")
	t0 := time.Now().UTC().Truncate(time.Second)
	r := protocol.CheckinRequest{InstalledVersion: "1.0.0", State: protocol.StateIdle}
	for i := range 3 {
		if _, err := s.Checkin(ctx, t0.Add(time.Duration(i)*time.Second), "s1", r); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, seen := rawRow(t, path, "s1"); seen != formatTime(t0.Add(2*time.Second)) {
		t.Errorf("last_seen after Close %s, want %s", seen, formatTime(t0.Add(2*time.Second)))
	}
}

// TestKilledStoreLosesAtMostOneFlushInterval: a server killed with
// SIGKILL loses only the check-in times since its last flush (at most
// SeenFlushInterval old); the flusher runs on its own. The store runs
// in a child process that is killed.
func TestKilledStoreLosesAtMostOneFlushInterval(t *testing.T) {
	if path := os.Getenv("STORE_KILL_CHILD"); path != "" {
		killChild(path)
		return
	}
	path := filepath.Join(t.TempDir(), "s.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestKilledStoreLosesAtMostOneFlushInterval$")
	cmd.Env = append(os.Environ(), "STORE_KILL_CHILD="+path)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	sc := bufio.NewScanner(out)
	var flushed, unflushed string
	for sc.Scan() {
		if _, err := fmt.Sscanf(sc.Text(), "flushed %s unflushed %s", &flushed, &unflushed); err == nil {
			break
		}
	}
	if flushed == "" {
		t.Fatal("the child store never reported its flush")
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if _, _, seen := rawRow(t, path, "s1"); seen != flushed {
		t.Errorf("after SIGKILL last_seen %s, want the flushed %s (the unflushed %s is lost)", seen, flushed, unflushed)
	}
}

// killChild is the killed process: it checks in, waits for its flusher
// to write that check-in's time, checks in again and waits to be killed.
func killChild(path string) {
	ctx := context.Background()
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(1)
	}
	s, err := Open(ctx, path)
	if err != nil {
		fail(err)
	}
	now := time.Now()
	if _, err := s.CreateEnrollToken(ctx, now, NewEnrollToken{Secret: "tok", Client: "c", ExpiresAt: now.Add(time.Hour), Uses: 1, By: "t"}); err != nil {
		fail(err)
	}
	if _, err := s.Enroll(ctx, now, "tok", protocol.EnrollRequest{Site: "s1", Client: "c", Product: "p"}, "cred"); err != nil {
		fail(err)
	}
	r := protocol.CheckinRequest{InstalledVersion: "1.0.0", State: protocol.StateIdle}
	t0 := now.UTC().Truncate(time.Second)
	t1, t2 := t0.Add(SeenFlushInterval), t0.Add(SeenFlushInterval+time.Second)
	for _, at := range []time.Time{t0, t1} {
		if _, err := s.Checkin(ctx, at, "s1", r); err != nil {
			fail(err)
		}
	}
	// The flusher writes t1 within SeenFlushInterval; a minute is the
	// bound of a stuck one.
	var seen sql.NullString
	for start := time.Now(); ; time.Sleep(50 * time.Millisecond) {
		if err := s.db.QueryRow(`SELECT last_seen FROM sites WHERE site = 's1'`).Scan(&seen); err != nil && !errors.Is(err, sql.ErrNoRows) {
			fail(err)
		}
		if seen.String == formatTime(t1) {
			break
		}
		if time.Since(start) > time.Minute {
			fail(fmt.Errorf("the flusher did not write last_seen %s in a minute (row: %s)", formatTime(t1), seen.String))
		}
	}
	if _, err := s.Checkin(ctx, t2, "s1", r); err != nil {
		fail(err)
	}
	fmt.Printf("flushed %s unflushed %s\n", formatTime(t1), formatTime(t2))
	time.Sleep(time.Hour)
}

// TestReplacedCredentialRefusedAtOnce: once a site is enrolled again, its
// old credential finds no site, though it was just used (and cached).
func TestReplacedCredentialRefusedAtOnce(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	enrollSite(t, s, "s1", "old")
	if site, err := s.SiteByCredential(ctx, "old"); err != nil || site != "s1" {
		t.Fatalf("old credential: %q %v", site, err)
	}
	enrollSite(t, s, "s1", "new")
	if site, err := s.SiteByCredential(ctx, "old"); !errors.Is(err, ErrNotFound) {
		t.Errorf("replaced credential: %q %v, want refused", site, err)
	}
	if site, err := s.SiteByCredential(ctx, "new"); err != nil || site != "s1" {
		t.Errorf("new credential: %q %v", site, err)
	}
}

// TestCachedReadsSeeChanges: what a check-in reads from memory (no open
// job, the window, the freezes) follows a job created, a window set or
// cleared and a freeze made or deleted at once.
func TestCachedReadsSeeChanges(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	enrollSite(t, s, "s1", "cred")
	now := time.Now()
	if _, err := s.OpenJob(ctx, "s1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("open job before any: %v", err)
	}
	err := s.WithJobs(ctx, func(t *JobTx) error {
		return t.InsertJob(NewJob{ID: "j1", Site: "s1", Product: "p", To: "1.0.0", Target: "p/p-1.0.0.tar.gz", CreatedBy: "t"}, now)
	})
	if err != nil {
		t.Fatal(err)
	}
	if o, err := s.OpenJob(ctx, "s1"); err != nil || o.Job.ID != "j1" {
		t.Errorf("open job after one was created: %+v %v", o, err)
	}

	if _, err := s.SiteWindow(ctx, "s1", "c"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("window before any: %v", err)
	}
	if err := s.SetWindow(ctx, now, ScopeClient, "c", []string{"Sat 02:00-06:00"}, "UTC", Audit{Actor: "t", Action: "window.set"}); err != nil {
		t.Fatal(err)
	}
	if w, err := s.SiteWindow(ctx, "s1", "c"); err != nil || w.Client != "c" || len(w.Weekly) != 1 {
		t.Errorf("window after one was set: %+v %v", w, err)
	}
	if err := s.ClearWindow(ctx, now, ScopeClient, "c", Audit{Actor: "t", Action: "window.clear"}); err != nil {
		t.Fatal(err)
	}
	if w, err := s.SiteWindow(ctx, "s1", "c"); !errors.Is(err, ErrNotFound) {
		t.Errorf("window after it was cleared: %+v %v", w, err)
	}

	if fs, err := s.Freezes(ctx, now); err != nil || len(fs) != 0 {
		t.Fatalf("freezes before any: %+v %v", fs, err)
	}
	end := now.Add(time.Hour)
	id, err := s.CreateFreeze(ctx, now, protocol.Freeze{Client: "c", From: now, To: end, Reason: "r", CreatedBy: "t"}, Audit{Actor: "t", Action: "freeze.create"})
	if err != nil {
		t.Fatal(err)
	}
	if fs, err := s.Freezes(ctx, now); err != nil || len(fs) != 1 {
		t.Errorf("freezes after one was made: %+v %v", fs, err)
	}
	if fs, err := s.Freezes(ctx, end); err != nil || len(fs) != 0 {
		t.Errorf("freezes once it ended: %+v %v", fs, err)
	}
	if err := s.DeleteFreeze(ctx, now, id, Audit{Actor: "t", Action: "freeze.delete"}); err != nil {
		t.Fatal(err)
	}
	if fs, err := s.Freezes(ctx, now); err != nil || len(fs) != 0 {
		t.Errorf("freezes after it was deleted: %+v %v", fs, err)
	}
}

// TestReaderNeverPairsANewCheckinWithAnOldReport: a reader whose row read
// came before a changed check-in committed must not show that check-in's
// time with the old report. Support waits for a check-in after an agent
// restarted and reads its drift (e2e TestSQLDropBlocksUpgrade failed
// so: a new last_seen with the drift of before).
func TestReaderNeverPairsANewCheckinWithAnOldReport(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	enrollSite(t, s, "s1", "cred1")
	t0 := time.Now().UTC().Truncate(time.Second)
	clean := protocol.CheckinRequest{InstalledVersion: "1.0.0", State: protocol.StateIdle, Hostname: "h"}
	if _, err := s.Checkin(ctx, t0, "s1", clean); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Checkin(ctx, t0.Add(time.Second), "s1", clean); err != nil {
		t.Fatal(err)
	}
	// Hold the writer, so that the changed check-in waits to commit.
	held, release := make(chan struct{}), make(chan struct{})
	go s.tx(ctx, func(*sql.Tx) error { close(held); <-release; return nil })
	<-held
	t2 := t0.Add(2 * time.Second)
	drifted := clean
	drifted.Drift = []string{"schema: added column customers.hotfix_flag"}
	wrote := make(chan error, 1)
	go func() { _, err := s.Checkin(ctx, t2, "s1", drifted); wrote <- err }()
	read := getSiteLater(t, s, "s1")
	// Let the reader read the row (the old one: the check-in has not
	// committed) before the writer goes on. Had it not yet, it reads the
	// new row and the test cannot fail, never the other way round.
	time.Sleep(200 * time.Millisecond)
	close(release)
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	st := <-read
	if st.LastSeen != nil && !st.LastSeen.Before(t2) && len(st.Drift) == 0 {
		t.Errorf("a reader shows the changed check-in's time %s with the report of before (drift %q)", st.LastSeen, st.Drift)
	}
	// Once committed, both are read together.
	st, err := s.GetSite(ctx, "s1")
	if err != nil || st.LastSeen == nil || !st.LastSeen.Equal(t2) || len(st.Drift) != 1 {
		t.Errorf("after the check-in: last_seen %v, drift %q (%v)", st.LastSeen, st.Drift, err)
	}
}

// blockWriter makes the store's writer wait until the returned release is
// called: every write queues meanwhile.
func blockWriter(t *testing.T, s *Store) (release func()) {
	t.Helper()
	busy, free := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- s.tx(context.Background(), func(*sql.Tx) error { close(busy); <-free; return nil })
	}()
	<-busy
	var once bool
	release = func() {
		if !once {
			once = true
			close(free)
			if err := <-done; err != nil {
				t.Error(err)
			}
		}
	}
	t.Cleanup(release)
	return release
}

// takeReadPool takes every connection of s's read pool, as thousands of
// agents' check-ins do, until release is called (at the latest when the
// test ends).
func takeReadPool(t *testing.T, s *Store) (release func()) {
	t.Helper()
	var conns []*sql.Conn
	release = func() {
		for _, c := range conns {
			c.Close()
		}
		conns = nil
	}
	t.Cleanup(release)
	for range s.db.Stats().MaxOpenConnections {
		c, err := s.db.Conn(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	return release
}

// siteReportedThenWriterHeld opens a store whose site s1 (client "c")
// has reported 1.0.0, then holds its writer until release.
func siteReportedThenWriterHeld(t *testing.T) (s *Store, release func()) {
	t.Helper()
	s, _ = openTemp(t)
	enrollSite(t, s, "s1", "cred-1")
	if _, err := s.Checkin(context.Background(), time.Now(), "s1", protocol.CheckinRequest{InstalledVersion: "1.0.0", State: protocol.StateIdle}); err != nil {
		t.Fatal(err)
	}
	return s, blockWriter(t, s)
}

// TestSiteListDoesNotWaitForReports: a list of sites (an upgrade of a
// client reads it first) is answered while those sites' agents' check-in
// reports wait for the writer, as they do when thousands report at once
// (reports whose check-ins wait: a job's; a reader waits for those
// answered already, store_reports.go).
func TestSiteListDoesNotWaitForReports(t *testing.T) {
	s, release := siteReportedThenWriterHeld(t)
	ctx := context.Background()
	checkin := make(chan error, 1)
	go func() {
		_, err := s.Checkin(ctx, time.Now(), "s1", protocol.CheckinRequest{InstalledVersion: "1.1.0", State: protocol.StateIdle})
		checkin <- err
	}()
	time.Sleep(200 * time.Millisecond) // setup: let the report queue
	listed := make(chan error, 1)
	go func() {
		sites, err := s.ListSites(Priority(ctx), SiteFilter{Client: "c"})
		if err == nil && (len(sites) != 1 || sites[0].InstalledVersion != "1.0.0") {
			err = fmt.Errorf("listed %+v; want s1 at 1.0.0 (its new report is not committed)", sites)
		}
		listed <- err
	}()
	answeredWithin(t, listed, "the list of sites waited for a site's report to be written")
	release()
	if err := <-checkin; err != nil {
		t.Fatal(err)
	}
}

// TestReportForgottenDuringItsWriteIsWrittenAgain: the site's row changed
// by something else (a job's transaction) while a check-in's report was
// being written: the report is not taken as what the row holds, and the
// next check-in reporting it writes it.
func TestReportForgottenDuringItsWriteIsWrittenAgain(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	enrollSite(t, s, "s1", "cred-1")
	req := protocol.CheckinRequest{InstalledVersion: "1.0.0", State: protocol.StateIdle}
	release := blockWriter(t, s)
	checkin := make(chan error, 1)
	go func() {
		_, err := s.Checkin(ctx, time.Now(), "s1", req)
		checkin <- err
	}()
	time.Sleep(200 * time.Millisecond) // setup: let the report queue
	s.forgetReport("s1")
	release()
	if err := <-checkin; err != nil {
		t.Fatal(err)
	}
	if !s.CheckinWrites("s1", req) {
		t.Fatal("a report forgotten while it was written is taken as the row's: the next check-in reporting it would not write it")
	}
	if !s.CheckinWrites("s1", req) || func() bool { w, _ := s.Checkin(ctx, time.Now(), "s1", req); return !w }() {
		t.Fatal("the next check-in did not write its report")
	}
	if s.CheckinWrites("s1", req) {
		t.Fatal("after it was written, the same report would be written again")
	}
}

// TestEnrolledSiteNeedsNoReadToCheckIn: a site just enrolled through this
// store is known by its credential and its client without a read: with
// every connection of the read pool taken (thousands of agents checking
// in), its agent's first check-in finds both. A credential replaced
// since is still refused.
func TestEnrolledSiteNeedsNoReadToCheckIn(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	enrollSite(t, s, "s1", "first")
	enrollSite(t, s, "s1", "second") // re-enrolled: replaces "first"
	enrollSite(t, s, "s2", "cred-2")
	func() {
		defer takeReadPool(t, s)()
		short, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if site, err := s.SiteByCredential(short, "cred-2"); err != nil || site != "s2" {
			t.Fatalf("a new site's credential with the read pool taken: %q %v; want s2 from memory", site, err)
		}
		if client, err := s.SiteClient(short, "s2"); err != nil || client != "c" {
			t.Fatalf("a new site's client with the read pool taken: %q %v; want c from memory", client, err)
		}
	}()
	if site, err := s.SiteByCredential(ctx, "first"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the replaced credential: %q %v; want refused", site, err)
	}
	if site, err := s.SiteByCredential(ctx, "second"); err != nil || site != "s1" {
		t.Fatalf("the replacing credential: %q %v", site, err)
	}
}

// TestNoOpenJobIsPerSite: a site's cached "no open job" holds until a job
// is created for that site, whatever happens to other sites' jobs (until
// 28 Nov any job created, started or ended dropped every site's, so each
// wave of job reports sent every idle check-in of the fleet back to the
// jobs table); a job written into the database behind the store's back
// is handed out once a sweep has run.
func TestNoOpenJobIsPerSite(t *testing.T) {
	a, b := openTwo(t) // b writes behind a's back: a hears nothing of it
	ctx := context.Background()
	now := time.Now()
	job := func(id, site string) NewJob {
		return NewJob{ID: id, Site: site, Product: "p", From: "1.0.0", To: "1.1.0", Target: "p/p-1.1.0.tar.gz", CreatedBy: "t"}
	}
	for _, site := range []string{"s1", "s2"} {
		enrollSite(t, a, site, "cred-"+site)
		if _, err := a.OpenJob(ctx, site); !errors.Is(err, ErrNotFound) {
			t.Fatalf("%s before any job: %v", site, err)
		}
	}
	if err := b.WithJobs(ctx, func(t *JobTx) error { return t.InsertJob(job("j2", "s2"), now) }); err != nil {
		t.Fatal(err)
	}

	// A job of s1 created, started and ended through a.
	if err := a.WithJobs(ctx, func(t *JobTx) error { return t.InsertJobs([]NewJob{job("j1", "s1")}, now) }); err != nil {
		t.Fatal(err)
	}
	if o, err := a.OpenJob(ctx, "s1"); err != nil || o.Job.ID != "j1" {
		t.Fatalf("s1 after its job was created: %+v %v, want j1", o.Job, err)
	}
	if err := a.WithJobs(ctx, func(t *JobTx) error {
		if err := t.StartJob("j1", now, now); err != nil {
			return err
		}
		return t.EndJob("j1", protocol.ResultSucceeded, "", now)
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.OpenJob(ctx, "s1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("s1 after its job ended: %v, want no open job", err)
	}
	if o, err := a.OpenJob(ctx, "s2"); !errors.Is(err, ErrNotFound) {
		t.Errorf("s2 read the jobs table again because of s1's job (found %s, written behind the store's back): %v", o.Job.ID, err)
	}

	if err := a.sweepNoJob(ctx); err != nil {
		t.Fatal(err)
	}
	if o, err := a.OpenJob(ctx, "s2"); err != nil || o.Job.ID != "j2" {
		t.Errorf("s2 after a sweep: %+v %v, want j2 (written behind the store's back)", o.Job, err)
	}
}

// TestCheckinRightAfterAWriteIsNotWrittenAgain: an agent's long-poll a
// moment after its report was written (every agent coming online, every
// job's end) costs the flusher no write: the row stays within
// SeenFlushInterval of the truth, every reader of the store sees the
// truth; a check-in that much later is written, and an explicit flush
// (Close, a filter on the check-in times) writes every time kept.
func TestCheckinRightAfterAWriteIsNotWrittenAgain(t *testing.T) {
	sqliteOnly(t) // reads the SQLite file directly
	s, path := openTemp(t)
	ctx := context.Background()
	enrollSite(t, s, "s1", "cred1")
	t0 := time.Now().UTC().Truncate(time.Second)
	idle := protocol.CheckinRequest{InstalledVersion: "1.0.0", State: protocol.StateIdle}
	if wrote, err := s.Checkin(ctx, t0, "s1", idle); err != nil || !wrote {
		t.Fatalf("first check-in: wrote %v, %v", wrote, err)
	}
	soon := t0.Add(300 * time.Millisecond)
	if _, err := s.Checkin(ctx, soon, "s1", idle); err != nil {
		t.Fatal(err)
	}
	if err := s.flushSeen(ctx, SeenFlushInterval); err != nil {
		t.Fatal(err)
	}
	if _, _, seen := rawRow(t, path, "s1"); seen != formatTime(t0) {
		t.Errorf("the flusher wrote a check-in 300 ms after a written one: last_seen %s, want still %s", seen, formatTime(t0))
	}
	if st, err := s.GetSite(ctx, "s1"); err != nil || st.LastSeen == nil || !st.LastSeen.Equal(soon) {
		t.Errorf("GetSite last_seen %v (%v), want %s", st.LastSeen, err, soon)
	}

	later := t0.Add(SeenFlushInterval)
	if _, err := s.Checkin(ctx, later, "s1", idle); err != nil {
		t.Fatal(err)
	}
	if err := s.flushSeen(ctx, SeenFlushInterval); err != nil {
		t.Fatal(err)
	}
	if _, _, seen := rawRow(t, path, "s1"); seen != formatTime(later) {
		t.Errorf("row after a check-in %v later: last_seen %s, want %s", SeenFlushInterval, seen, formatTime(later))
	}

	last := later.Add(time.Second)
	if _, err := s.Checkin(ctx, last, "s1", idle); err != nil {
		t.Fatal(err)
	}
	if err := s.FlushSeen(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, seen := rawRow(t, path, "s1"); seen != formatTime(last) {
		t.Errorf("row after FlushSeen: last_seen %s, want %s", seen, formatTime(last))
	}
}
