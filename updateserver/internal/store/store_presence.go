package store

import (
	"context"
	"database/sql"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
)

// The check-in hot path. An agent checks in every poll interval and
// almost always reports what it reported last time; such a check-in
// must cost no disk write and, ideally, no query. So the store keeps in
// memory, for this process:
//
//   - each site's last report as written (presence): a check-in that
//     reports the same is not written; only its time is kept, and
//     flushed as last_seen in one batched transaction every
//     SeenFlushInterval (when it is that much newer than the row's)
//     and at Close. Every reader of a site's
//     last_seen in this store sees the in-memory time, so the API is
//     exact while the row may be up to SeenFlushInterval stale (after
//     a crash, that much is lost);
//   - credential -> site (creds), dropped when the site's credential is
//     replaced (re-enrollment), so the old one is refused at once;
//   - "this site has no open job" (noJob), valid until a job is
//     created for that site (jobsCreated);
//   - the window and freezes a check-in's answer is computed from
//     (maint), valid until a window or freeze is changed (maintGen);
//   - each site's client, which never changes.
//
// Each cache is filled only from a read that started after the last
// change it depends on had committed (a generation counter bumped after
// the commit), so a cache never outlives a change made through this
// store. Replicas on one PostgreSQL database hear each other's changes
// through the bus and drop the same entries (store_replicas.go): a
// change made through another replica is seen here once its
// notification arrives, a moment after it commits. Any other process
// writing the database directly is not seen by these caches, except that
// every NoJobSweep one query lists the sites that have an open job and
// drops their "no open job": a job written into the database by hand (or
// by a thief: testenv's TestTrustStolenServer) is handed out at the
// site's first check-in after the next sweep or the one after. (Until
// 28 Nov the entry expired after 5 s instead: every idle long-poll, once
// a minute per agent, then read the jobs table, a query per check-in on
// PostgreSQL with 100,000 agents.)

// NoJobSweep is how often the sites with an open job are read, to drop
// a "no open job" that a write made outside this store's API made wrong.
const NoJobSweep = 5 * time.Second

// noJobEntry is a site's "no open job": the jobGen it was read at.
type noJobEntry struct {
	gen uint64
}

// SeenFlushInterval is how often check-in times kept in memory are
// written to the store as last_seen.
const SeenFlushInterval = 2 * time.Second

// report is what a check-in writes to a site's row besides last_seen.
type report struct {
	installed, state, agent, os, arch, host, drift string
}

func reportOf(c protocol.CheckinRequest) report {
	return report{c.InstalledVersion, c.State, c.AgentVersion, c.OS, c.Arch, c.Hostname, strings.Join(c.Drift, "\n")}
}

// seenEntry is one site's presence.
//
// A check-in that writes holds write while it queues its report (and,
// when it waits for the commit, until then), and mu only to read and set
// the fields: readers (a list of sites adding the check-in times, the
// flusher) never wait for a write. They did: listing a client's 10,000
// sites for an upgrade waited for every report those sites had in the
// writer's queue, seconds under load.
type seenEntry struct {
	write sync.Mutex // serializes the site's check-in writes
	mu    sync.Mutex // guards the fields below
	known bool       // rep is what the row holds
	// forgot counts forget: a write that began before one does not make
	// rep known.
	forgot uint64
	rep    report
	// queued numbers the site's reports queued to be written, settled
	// the newest answered; while settled < queued, next is the newest
	// queued (the row will hold it), and nextSeen the last check-in
	// that reported it again (it becomes idle once next is written).
	queued, settled uint64
	next            report
	nextSeen        time.Time
	seen            time.Time // the site's last check-in
	stored          time.Time // the last_seen the row holds, as far as known
	// idle is the site's last check-in that wrote nothing: what readers
	// add to the row. A check-in that wrote has its time in the row with
	// its report; shown over a row read before that write committed, it
	// would pair the new time with the old report (drift, versions).
	idle time.Time
}

type caches struct {
	// mu guards sites: every check-in looks its site up, a list of
	// 10,000 sites all of them.
	mu    sync.RWMutex
	sites map[string]*seenEntry

	credMu  sync.RWMutex
	creds   map[string]string // credential hash -> site
	credOf  map[string]string // site -> its cached credential hash
	credGen uint64            // bumped when a credential is replaced

	// jobGen is bumped when every "no open job" is dropped (the bus
	// resynced); jobSeq after jobs are created, before their sites'
	// entries are dropped (jobsCreated), so that a read that ran
	// meanwhile keeps no entry.
	jobGen, jobSeq atomic.Uint64
	noJob          sync.Map // site -> noJobEntry: it had no open job

	// The reads of cache misses, batched (readBatcher).
	credReads readBatcher[string, siteClient] // credential hash -> site
	jobReads  readBatcher[string, OpenJob]    // site -> its open job

	maintGen   atomic.Uint64 // bumped after a window or freeze changes
	maintMu    sync.Mutex
	windows    map[windowKey]protocol.Window // every window, of generation windowsGen
	windowsGen uint64
	windowsOK  bool
	// windowsLoad: one reader of the windows at a time.
	windowsLoad sync.Mutex
	freezes     []protocol.Freeze // not ended at freezesAt
	freezesAt   time.Time
	freezesGen  uint64
	freezesOK   bool

	clients sync.Map // site -> client

	enroll enrollQueue // enrollments waiting for their batch (store_enroll.go)

	flushStop chan struct{}
	flushDone chan struct{}
}

func (c *caches) init(s *Store) {
	c.credReads.fetch = s.sitesByCredential
	c.jobReads.fetch = s.openJobs
	c.sites = map[string]*seenEntry{}
	c.creds = map[string]string{}
	c.credOf = map[string]string{}
	c.flushStop = make(chan struct{})
	c.flushDone = make(chan struct{})
}

func (c *caches) entry(site string) *seenEntry {
	c.mu.RLock()
	e := c.sites[site]
	c.mu.RUnlock()
	if e != nil {
		return e
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e = c.sites[site]
	if e == nil {
		e = &seenEntry{}
		c.sites[site] = e
	}
	return e
}

// forgetReport makes the next check-in of site write its report: the
// row was changed by something else. Call it after that change commits.
func (s *Store) forgetReport(site string) {
	s.c.entry(site).forget()
}

// forget makes the next check-in write its report.
func (e *seenEntry) forget() {
	e.mu.Lock()
	e.known = false
	e.forgot++
	e.mu.Unlock()
}

// Checkin records what an agent reported. A report equal to the one the
// site's row holds is not written: only its time is kept in memory, and
// the row's last_seen kept within SeenFlushInterval of it (flushSeen).
// Another is written with the writer's next group, and Checkin returns
// once it is committed. It says whether it wrote.
func (s *Store) Checkin(ctx context.Context, now time.Time, site string, c protocol.CheckinRequest) (bool, error) {
	return s.checkin(ctx, now, site, c, true)
}

// CheckinNoWait is Checkin returning as soon as the report is queued:
// the check-ins that carry no job's progress (store_reports.go). It says
// whether the report is to be written.
func (s *Store) CheckinNoWait(now time.Time, site string, c protocol.CheckinRequest) (bool, error) {
	return s.checkin(context.Background(), now, site, c, false)
}

func (s *Store) checkin(ctx context.Context, now time.Time, site string, c protocol.CheckinRequest, wait bool) (bool, error) {
	r := reportOf(c)
	e := s.c.entry(site)
	e.write.Lock()
	defer e.write.Unlock()
	e.mu.Lock()
	pending := e.settled < e.queued
	if !pending && e.known && e.rep == r {
		if now.After(e.seen) {
			e.seen = now
		}
		if now.After(e.idle) {
			e.idle = now
		}
		e.mu.Unlock()
		return false, nil
	}
	if pending && e.next == r && !wait {
		// On its way already (the agent's long-poll after its report):
		// its time counts once the report is written (settle).
		if now.After(e.nextSeen) {
			e.nextSeen = now
		}
		e.mu.Unlock()
		return false, nil
	}
	e.queued++
	seq, forgot := e.queued, e.forgot
	e.next, e.nextSeen = r, time.Time{}
	e.mu.Unlock()
	err := s.writeReport(ctx, e, site, r, now, seq, forgot, wait)
	return err == nil, err
}

// settle records the outcome of q, a report of e's site: the newest one
// queued makes its report known to be the row's (unless forgotten
// meanwhile: the row was changed by something else, maybe after it), or
// on failure unknown, so that the next check-in writes it again.
func (e *seenEntry) settle(q *reportReq, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.settled = max(e.settled, q.seq)
	if err == nil {
		if q.now.After(e.seen) {
			e.seen = q.now
		}
		if q.now.After(e.stored) {
			e.stored = q.now
		}
	}
	if q.seq != e.queued {
		return // a newer one is queued: it decides
	}
	e.known, e.rep = err == nil && e.forgot == q.forgot, q.rep
	if err == nil {
		if e.nextSeen.After(e.seen) {
			e.seen = e.nextSeen
		}
		if e.nextSeen.After(e.idle) {
			e.idle = e.nextSeen
		}
	}
	e.nextSeen = time.Time{}
}

// CheckinWrites says whether a check-in of site reporting c would be
// written (its report differs from the one the row holds or will hold,
// or it is not known), without recording anything.
func (s *Store) CheckinWrites(site string, c protocol.CheckinRequest) bool {
	r := reportOf(c)
	e := s.c.entry(site)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.settled < e.queued {
		return e.next != r
	}
	return !e.known || e.rep != r
}

// lastSeen is site's last check-in as this process knows it: at least
// what the row holds. Of the check-ins that wrote, only the row's time
// counts, so that a time is never shown with a report older than its own.
func (s *Store) lastSeen(site string, row *time.Time) *time.Time {
	s.c.mu.RLock()
	e := s.c.sites[site]
	s.c.mu.RUnlock()
	return e.lastSeen(row)
}

// lastSeen is lastSeen of e's site (none: nil).
func (e *seenEntry) lastSeen(row *time.Time) *time.Time {
	if e == nil {
		return row
	}
	e.mu.Lock()
	seen := e.idle
	e.mu.Unlock()
	if seen.IsZero() || (row != nil && !row.Before(seen)) {
		return row
	}
	t := seen.UTC()
	return &t
}

// withLastSeen gives sites their in-memory last_seen (see lastSeen),
// looking them up together: a list of a client's 10,000 sites does not
// take turns with the check-ins 10,000 times.
func (s *Store) withLastSeen(sites []protocol.Site, err error) ([]protocol.Site, error) {
	if err != nil {
		return nil, err
	}
	entries := make([]*seenEntry, len(sites))
	s.c.mu.RLock()
	for i := range sites {
		entries[i] = s.c.sites[sites[i].Site]
	}
	s.c.mu.RUnlock()
	for i := range sites {
		sites[i].LastSeen = entries[i].lastSeen(sites[i].LastSeen)
	}
	return sites, nil
}

// scanSite is scanSite with the site's in-memory last_seen.
func (s *Store) scanSite(r scanner) (protocol.Site, error) {
	st, err := scanSite(r)
	if err == nil {
		st.LastSeen = s.lastSeen(st.Site, st.LastSeen)
	}
	return st, err
}

// FlushSeen writes the check-in times kept in memory as last_seen, in
// batched transactions.
func (s *Store) FlushSeen(ctx context.Context) error { return s.flushSeen(ctx, 0) }

// flushSeen is FlushSeen of the times at least lag newer than the row's.
// The flusher passes SeenFlushInterval: the row is then never further
// behind a site's last check-in than it would be between two flushes,
// and a check-in that came right after a written one (an agent's
// long-poll after its report: every agent coming online, every job's
// end) is not written a second time a moment later. While 100,000
// agents came online, those second writes were half of the rows the
// replicas' writers took turns to update.
func (s *Store) flushSeen(ctx context.Context, lag time.Duration) error {
	type pending struct {
		site string
		seen time.Time
	}
	var todo []pending
	s.c.mu.RLock()
	entries := make(map[string]*seenEntry, len(s.c.sites))
	for k, e := range s.c.sites {
		entries[k] = e
	}
	s.c.mu.RUnlock()
	for site, e := range entries {
		e.mu.Lock()
		if d := e.seen.Sub(e.stored); d > 0 && d >= lag {
			todo = append(todo, pending{site, e.seen})
		}
		e.mu.Unlock()
	}
	const batch = 500
	for len(todo) > 0 {
		n := min(batch, len(todo))
		part := todo[:n]
		todo = todo[n:]
		err := s.tx(ctx, func(tx *sql.Tx) error {
			if s.dialect == Postgres {
				// One statement, one round trip, for the whole part: the
				// writer holds the write lock of every replica meanwhile,
				// and 500 round trips of a loaded machine took seconds.
				sites, seen := make([]string, len(part)), make([]string, len(part))
				for i, p := range part {
					sites[i], seen[i] = p.site, formatTime(p.seen)
				}
				_, err := tx.Exec(`UPDATE sites SET last_seen = v.seen FROM unnest(?::text[], ?::text[]) AS v(site, seen)
					WHERE sites.site = v.site AND (sites.last_seen IS NULL OR sites.last_seen < v.seen)`, sites, seen)
				return err
			}
			st, err := tx.Prepare(`UPDATE sites SET last_seen = ? WHERE site = ? AND (last_seen IS NULL OR last_seen < ?)`)
			if err != nil {
				return err
			}
			defer st.Close()
			for _, p := range part {
				at := formatTime(p.seen)
				if _, err := st.Exec(at, p.site, at); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, p := range part {
			e := entries[p.site]
			e.mu.Lock()
			if p.seen.After(e.stored) {
				e.stored = p.seen
			}
			e.mu.Unlock()
		}
	}
	return nil
}

// flusher runs FlushSeen every SeenFlushInterval until Close.
func (s *Store) flusher() {
	defer close(s.c.flushDone)
	t := time.NewTicker(SeenFlushInterval)
	defer t.Stop()
	sweep := time.NewTicker(NoJobSweep)
	defer sweep.Stop()
	for {
		select {
		case <-t.C:
			s.flushSeen(context.Background(), SeenFlushInterval) // retried at the next tick
		case <-sweep.C:
			s.sweepNoJob(context.Background()) // retried at the next tick
		case <-s.c.flushStop:
			return
		}
	}
}

// siteClient is a site and its client.
type siteClient struct{ site, client string }

// sitesByCredential reads the site and client of each of hashes (at
// most inChunk credential hashes) that has one, in one query.
func (s *Store) sitesByCredential(ctx context.Context, hashes []string) (map[string]siteClient, error) {
	in, args := inList(hashes)
	rows, err := s.query(ctx, `SELECT credential_hash, site, client FROM sites WHERE credential_hash IN (`+in+`)`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make(map[string]siteClient, len(hashes))
	for rows.Next() {
		var h string
		var sc siteClient
		if err := rows.Scan(&h, &sc.site, &sc.client); err != nil {
			return nil, err
		}
		out[h] = sc
	}
	return out, rows.Err()
}

// SiteByCredential finds the site whose agent holds credential.
func (s *Store) SiteByCredential(ctx context.Context, credential string) (string, error) {
	h := HashSecret(credential)
	s.c.credMu.RLock()
	site, ok := s.c.creds[h]
	gen := s.c.credGen
	s.c.credMu.RUnlock()
	if ok {
		return site, nil
	}
	// Its client too, which the check-in asks next (SiteClient): one
	// read fewer of each agent's first check-in on a replica. Read with
	// the other check-ins' misses of the moment (readBatcher).
	sc, found, err := s.c.credReads.get(ctx, h)
	if err != nil {
		return "", err
	}
	if !found {
		return "", ErrNotFound
	}
	site = sc.site
	s.c.clients.Store(site, sc.client)
	s.c.credMu.Lock()
	if s.c.credGen == gen {
		s.c.creds[h] = site
		s.c.credOf[site] = h
	}
	s.c.credMu.Unlock()
	return site, nil
}

// credentialReplaced drops site's cached credential. Call it after the
// change commits.
func (s *Store) credentialReplaced(site string) {
	s.c.credMu.Lock()
	defer s.c.credMu.Unlock()
	s.c.credGen++
	if h, ok := s.c.credOf[site]; ok {
		delete(s.c.creds, h)
		delete(s.c.credOf, site)
	}
}

// SiteClient returns a site's client (which never changes).
func (s *Store) SiteClient(ctx context.Context, site string) (string, error) {
	if c, ok := s.c.clients.Load(site); ok {
		return c.(string), nil
	}
	var client string
	err := s.queryRow(ctx, `SELECT client FROM sites WHERE site = ?`, site).Scan(&client)
	if err == sql.ErrNoRows {
		return "", ErrNotFound
	}
	if err != nil {
		return "", err
	}
	s.c.clients.Store(site, client)
	return client, nil
}

// noOpenJob says whether site is known to have no open job.
func (s *Store) noOpenJob(site string) bool {
	v, ok := s.c.noJob.Load(site)
	return ok && v.(noJobEntry).gen == s.c.jobGen.Load()
}

// jobsCreated drops the "no open job" of the sites jobs were created
// for: called after the commit (or, on another replica, once its bus
// delivered the news). Nothing else makes an open job appear: a job
// starts, ends or is amended from one open state to the other or from
// one end to another, never back to open.
func (s *Store) jobsCreated(sites []string) {
	s.c.jobSeq.Add(1)
	for _, site := range sites {
		s.c.noJob.Delete(site)
	}
}

// sweepNoJob drops the "no open job" of every site that has an open job
// in the database (one written there behind this store's back): one
// query, none while nothing is cached.
func (s *Store) sweepNoJob(ctx context.Context) error {
	cached := false
	s.c.noJob.Range(func(any, any) bool { cached = true; return false })
	if !cached {
		return nil
	}
	rows, err := s.query(ctx, `SELECT DISTINCT site FROM jobs WHERE result IN ('pending','running')`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var site string
		if err := rows.Scan(&site); err != nil {
			return err
		}
		s.c.noJob.Delete(site)
	}
	return rows.Err()
}

// SiteWindow returns the window that applies to a site of client: its
// own, else its client's; ErrNotFound when neither has one.
//
// Every site's first check-in asks, and the windows are few next to the
// sites (a client's, a few sites'): they are read whole, once after each
// change (windowsOf), not one query per site, which made a read of every
// one of 100,000 agents' first check-ins.
func (s *Store) SiteWindow(ctx context.Context, site, client string) (protocol.Window, error) {
	all, err := s.windowsOf(ctx)
	if err != nil {
		return protocol.Window{}, err
	}
	w, ok := all[windowKey{ScopeSite, site}]
	if !ok {
		if w, ok = all[windowKey{ScopeClient, client}]; !ok {
			return protocol.Window{}, ErrNotFound
		}
	}
	w.Weekly = append([]string(nil), w.Weekly...)
	return w, nil
}

// windowKey names a window: its scope and its site's or client's name.
type windowKey struct{ scope, name string }

// windowsOf returns every window, read once for each generation of the
// maintenance caches (one reader at a time: the check-ins that missed
// together wait for one read).
func (s *Store) windowsOf(ctx context.Context) (map[windowKey]protocol.Window, error) {
	gen := s.c.maintGen.Load()
	s.c.maintMu.Lock()
	all, ok := s.c.windows, s.c.windowsOK && s.c.windowsGen == gen
	s.c.maintMu.Unlock()
	if ok {
		return all, nil
	}
	s.c.windowsLoad.Lock()
	defer s.c.windowsLoad.Unlock()
	s.c.maintMu.Lock()
	all, ok = s.c.windows, s.c.windowsOK && s.c.windowsGen == gen
	s.c.maintMu.Unlock()
	if ok {
		return all, nil
	}
	ws, err := s.Windows(ctx)
	if err != nil {
		return nil, err
	}
	all = make(map[windowKey]protocol.Window, len(ws))
	for _, w := range ws {
		if w.Site != "" {
			all[windowKey{ScopeSite, w.Site}] = w
		} else {
			all[windowKey{ScopeClient, w.Client}] = w
		}
	}
	s.c.maintMu.Lock()
	s.c.windows, s.c.windowsGen, s.c.windowsOK = all, gen, true
	s.c.maintMu.Unlock()
	return all, nil
}

// Freezes returns the freezes not yet ended at now, soonest first.
func (s *Store) Freezes(ctx context.Context, now time.Time) ([]protocol.Freeze, error) {
	gen := s.c.maintGen.Load()
	s.c.maintMu.Lock()
	fs, ok := s.c.freezes, s.c.freezesOK && s.c.freezesGen == gen && !now.Before(s.c.freezesAt)
	s.c.maintMu.Unlock()
	if !ok {
		var err error
		if fs, err = s.readFreezes(ctx, now); err != nil {
			return nil, err
		}
		s.c.maintMu.Lock()
		s.c.freezes, s.c.freezesAt, s.c.freezesGen, s.c.freezesOK = fs, now, gen, true
		s.c.maintMu.Unlock()
	}
	out := []protocol.Freeze{}
	for _, f := range fs {
		if f.To.UnixNano() > now.UnixNano() {
			out = append(out, f)
		}
	}
	return out, nil
}

// maintChanged invalidates the cached windows and freezes. Call it after
// the change commits.
func (s *Store) maintChanged() { s.c.maintGen.Add(1) }
