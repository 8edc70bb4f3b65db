package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/store/storetest"
)

// TestGroupCommitKeepsEachWriteItsOwn: many writers at once through two
// stores on one database (two replicas on PostgreSQL), so their writes
// share group commits, some of them failing halfway through their own
// transaction. What a user sees afterwards is exactly what each caller was
// told: every write answered nil is there (through either store), a write
// that failed left nothing (not even what it wrote before it failed: the
// release row of a publish whose metadata lost the race, the upload that
// publish would have deleted), a write whose caller gave up before its
// turn left nothing, and each caller's error is its own.
func TestGroupCommitKeepsEachWriteItsOwn(t *testing.T) {
	a, b := openTwo(t)
	ctx := context.Background()
	now := time.Now()
	publish := func(s *Store, version string, targets int64, upload string) error {
		return s.PublishRelease(ctx, Publish{
			Release: protocol.Release{Product: "p", Version: version, Target: "p/p-" + version + ".tar.gz", SHA256: "ab", Length: 1,
				Channels: []string{"stable"}, PublishedAt: now, PublishedBy: "t"},
			Metadata: []Metadata{{Role: "targets", Version: targets, Data: []byte("{}")}},
			UploadID: upload,
			Audit:    Audit{Actor: "t", Action: "release.publish", Object: "p " + version},
		})
	}
	if err := publish(a, "0.0.1", 1, ""); err != nil {
		t.Fatal(err)
	}
	const n = 200
	if err := a.InsertUpload(ctx, Upload{ID: "taken", CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if i%5 < 2 {
			if err := a.InsertUpload(ctx, Upload{ID: fmt.Sprintf("pub-%d", i), CreatedAt: now}); err != nil {
				t.Fatal(err)
			}
		}
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()

	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		s := []*Store{a, b}[i%2]
		wg.Go(func() {
			<-start
			switch i % 5 {
			case 0: // publishes, deleting its upload
				errs[i] = publish(s, fmt.Sprintf("1.0.%d", i), int64(100+i), fmt.Sprintf("pub-%d", i))
			case 1: // loses the race for targets version 1 after writing its release row and deleting its upload
				errs[i] = publish(s, fmt.Sprintf("1.0.%d", i), 1, fmt.Sprintf("pub-%d", i))
			case 2: // a statement fails: the ID exists
				errs[i] = s.InsertUpload(ctx, Upload{ID: "taken", CreatedAt: now})
			case 3: // stages an upload
				errs[i] = s.InsertUpload(ctx, Upload{ID: fmt.Sprintf("u-%d", i), CreatedAt: now})
			case 4: // its caller gave up already
				errs[i] = s.InsertUpload(cancelled, Upload{ID: fmt.Sprintf("c-%d", i), CreatedAt: now})
			}
		})
	}
	close(start)
	wg.Wait()

	wantReleases := []string{"0.0.1"}
	for i, err := range errs {
		switch i % 5 {
		case 0, 3:
			if err != nil {
				t.Errorf("writer %d: %v, want nil", i, err)
			}
		case 1:
			if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "targets metadata version 1") {
				t.Errorf("writer %d: %v, want its own conflict over targets version 1", i, err)
			}
		case 2:
			if err == nil || errors.Is(err, ErrConflict) || !isUniqueViolation(err) {
				t.Errorf("writer %d: %v, want its own duplicate-key error", i, err)
			}
		case 4:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("writer %d: %v, want its own context.Canceled", i, err)
			}
		}
		if i%5 == 0 {
			wantReleases = append(wantReleases, fmt.Sprintf("1.0.%d", i))
		}
	}
	for _, s := range []*Store{a, b} {
		rels, err := s.ListReleases(ctx, ReleaseFilter{Product: "p"})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range rels {
			got = append(got, r.Version)
		}
		sort.Strings(got)
		sort.Strings(wantReleases)
		if strings.Join(got, " ") != strings.Join(wantReleases, " ") {
			t.Errorf("releases %v, want exactly %v (the failed publishes' rows rolled back)", got, wantReleases)
		}
		for i := range n {
			var id string
			want := true
			switch i % 5 {
			case 0:
				id, want = fmt.Sprintf("pub-%d", i), false
			case 1:
				id = fmt.Sprintf("pub-%d", i)
			case 3:
				id = fmt.Sprintf("u-%d", i)
			case 4:
				id, want = fmt.Sprintf("c-%d", i), false
			default:
				continue
			}
			if _, err := s.GetUpload(ctx, id); (err == nil) != want {
				t.Errorf("upload %s: %v, want it there: %t", id, err, want)
			}
		}
		log, err := s.AuditLog(ctx, AuditQuery{Limit: 10 * n})
		if err != nil {
			t.Fatal(err)
		}
		published := 0
		for _, e := range log {
			if e.Action == "release.publish" {
				published++
			}
		}
		if published != len(wantReleases) {
			t.Errorf("%d release.publish audit entries, want %d (one per release published)", published, len(wantReleases))
		}
	}
}

// TestPostgresGroupRunsAgainAfterADeadlock: a write whose group meets
// another transaction in a deadlock (here a session that holds the row the
// write updates and then waits for the store's write lock) is not failed:
// its whole group runs again once the other has committed, and the
// caller is answered nil with its write there once.
func TestPostgresGroupRunsAgainAfterADeadlock(t *testing.T) {
	path := storetest.Schema(t) // skips without PostgreSQL
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if err := s.InsertUpload(ctx, Upload{ID: "x", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("pgx", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	other, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Rollback()
	if _, err := other.Exec(`UPDATE uploads SET created_by = 'other' WHERE id = 'x'`); err != nil {
		t.Fatal(err)
	}
	runs := 0
	done := make(chan error, 1)
	go func() {
		done <- s.tx(ctx, func(tx *sql.Tx) error {
			runs++
			_, err := tx.Exec(`UPDATE uploads SET created_by = created_by || '+writer' WHERE id = 'x'`)
			return err
		})
	}()
	// The writer waits for the row; then the other session waits for the
	// write lock the writer holds: a deadlock, which PostgreSQL breaks by
	// failing the writer's statement (it waited first).
	for waiting := 0; waiting == 0; {
		if err := db.QueryRow(`SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%+writer%' AND query NOT LIKE '%pg_stat_activity%'`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := other.Exec(writeLock); err != nil {
		t.Fatal(err)
	}
	if err := other.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("the write met a deadlock: %v, want it run again and committed", err)
	}
	var by string
	if err := db.QueryRow(`SELECT created_by FROM uploads WHERE id = 'x'`).Scan(&by); err != nil {
		t.Fatal(err)
	}
	if by != "other+writer" || runs != 2 {
		t.Fatalf("created_by %q after %d runs, want \"other+writer\" after 2 (failed once, then once more after the other committed)", by, runs)
	}
}

// TestGroupAnswersEachRequestItsOwn: one group of writes (run as the
// writer runs a group): a request that fails, one whose caller gave up,
// and on PostgreSQL one that ignored a failed statement (which aborts a
// PostgreSQL transaction) are each answered their own error and leave
// nothing; the requests around them commit.
func TestGroupAnswersEachRequestItsOwn(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	if err := s.InsertUpload(ctx, Upload{ID: "taken", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	insert := func(id string) func(*sql.Tx) error {
		return func(tx *sql.Tx) error {
			_, err := tx.Exec(`INSERT INTO uploads (id, sha256, length, manifest, created_at, created_by) VALUES (?, '', 0, '', '', '')`, id)
			return err
		}
	}
	errOwn := errors.New("d's own error")
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	group := []*writeReq{
		{ctx: ctx, fn: insert("a")},
		{ctx: ctx, fn: func(tx *sql.Tx) error {
			insert("taken")(tx) // its error ignored
			return insert("b")(tx)
		}},
		{ctx: ctx, fn: insert("c")},
		{ctx: ctx, fn: func(tx *sql.Tx) error {
			insert("d")(tx)
			return errOwn
		}},
		{ctx: cancelled, fn: insert("e")},
		{ctx: ctx, fn: insert("taken")},
		{ctx: ctx, fn: insert("g")},
	}
	n, results, err := s.runGroup(group)
	if err != nil || n != len(group) {
		t.Fatalf("ran %d of %d: %v", n, len(group), err)
	}
	want := map[string]bool{"a": true, "b": !storetest.Postgres(), "c": true, "d": false, "e": false, "g": true}
	for id, there := range want {
		if _, err := s.GetUpload(ctx, id); (err == nil) != there {
			t.Errorf("upload %s: %v, want it there: %t", id, err, there)
		}
	}
	if results[0] != nil || results[2] != nil || results[6] != nil {
		t.Errorf("results %v: want nil for a, c and g", results)
	}
	if storetest.Postgres() != (results[1] != nil) {
		t.Errorf("b (ignored a failed statement): %v; want an error on PostgreSQL only", results[1])
	}
	if results[3] != errOwn || !errors.Is(results[4], context.Canceled) || !isUniqueViolation(results[5]) {
		t.Errorf("d, e, f answered %v, %v, %v: want each its own error", results[3], results[4], results[5])
	}
}

// TestConcurrentCheckinsEachWriteTheirReport: many agents whose reports
// changed check in at once through two stores (their reports are written
// in batches): each site's row holds its own report, and a read through
// either store sees it.
func TestConcurrentCheckinsEachWriteTheirReport(t *testing.T) {
	a, b := openTwo(t)
	const n = 120
	for i := range n {
		enrollSite(t, a, fmt.Sprintf("s%d", i), fmt.Sprintf("cred-%d", i))
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		s := []*Store{a, b}[i%2]
		wg.Go(func() {
			for round := range 3 {
				req := protocol.CheckinRequest{InstalledVersion: fmt.Sprintf("1.%d.%d", i, round), State: "idle", OS: "linux", Arch: "amd64",
					Hostname: fmt.Sprintf("host-%d", i), Drift: []string{fmt.Sprintf("file-%d", i)}}
				if _, err := s.Checkin(ctx, time.Now(), fmt.Sprintf("s%d", i), req); err != nil {
					errs[i] = err
					return
				}
			}
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("site s%d: %v", i, err)
		}
	}
	for _, s := range []*Store{a, b} {
		for i := range n {
			st, err := s.GetSite(ctx, fmt.Sprintf("s%d", i))
			if err != nil {
				t.Fatal(err)
			}
			if st.InstalledVersion != fmt.Sprintf("1.%d.2", i) || st.Hostname != fmt.Sprintf("host-%d", i) || strings.Join(st.Drift, ",") != fmt.Sprintf("file-%d", i) || st.LastSeen == nil {
				t.Fatalf("site s%d reads %+v: want its own last report", i, st)
			}
		}
	}
}

// TestLoneWriteThatFailsLeavesNothing: a write alone in its group runs
// without a savepoint (runGroup); when it fails after writing, none of
// its writes is kept, the caller gets its error, and the writer goes on
// with the next write.
func TestLoneWriteThatFailsLeavesNothing(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	now := time.Now()
	enrollSite(t, s, "s1", "cred")
	job := func(id string) NewJob {
		return NewJob{ID: id, Site: "s1", Product: "p", From: "1.0.0", To: "1.1.0", Target: "p/p-1.1.0.tar.gz", CreatedBy: "t"}
	}
	refused := errors.New("refused after writing")
	err := s.WithJobs(ctx, func(t *JobTx) error {
		if err := t.InsertJob(job("j1"), now); err != nil {
			return err
		}
		return refused
	})
	if !errors.Is(err, refused) {
		t.Fatalf("the failed write: %v, want its own error", err)
	}
	if j, err := s.JobEnd(ctx, "j1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("the failed write's job was kept: %+v %v", j, err)
	}
	if err := s.WithJobs(ctx, func(t *JobTx) error { return t.InsertJob(job("j2"), now) }); err != nil {
		t.Fatalf("the next write: %v", err)
	}
	if o, err := s.OpenJob(ctx, "s1"); err != nil || o.Job.ID != "j2" {
		t.Errorf("after the next write: %+v %v, want j2 alone", o.Job, err)
	}
}
