// Package store persists the update server's state in SQLite
// (modernc.org/sqlite, no cgo): operator tokens, releases and their
// channels, the signed TUF metadata, staged uploads, enroll tokens, sites
// (what each agent last reported), jobs and their events, maintenance
// windows and freezes, rollouts, and the audit log. One file per resource (store_<resource>.go).
//
// The store keeps rows and transactions, and no rules about them beyond
// the schema's: what happens to a job is decided by package fleet, inside
// a transaction the store gives it (WithJobs, store_jobtx.go).
//
// The database runs in WAL mode with a busy timeout, foreign keys on, and
// full fsync on commit; write transactions take the write lock up front
// (BEGIN IMMEDIATE) so two writers queue instead of failing. The schema is
// versioned with PRAGMA user_version and migrated forward at Open.
//
// The same store runs on PostgreSQL (Open with a postgres:// URL), through
// pgx's database/sql driver: the same SQL (? placeholders are rewritten to
// $n, see postgres.go), a schema of its own (postgres_schema.go), and the
// same writer: each group of writes is one transaction that first takes a
// transaction-level advisory lock (writeLock), so writes are serialized
// across replicas as they are on SQLite and no read-then-write of the
// store needs locks of its own.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dropless/dropless/updateserver/internal/bus"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// ErrNotFound is returned when a looked-up row does not exist.
var ErrNotFound = errors.New("not found")

// ErrConflict is returned when a row already exists or was changed meanwhile.
var ErrConflict = errors.New("conflict")

// ErrClosed is returned for writes after Close.
var ErrClosed = errors.New("store is closed")

// Store is the server's database.
//
// Reads go through a pool of read-only connections (WAL lets them run
// beside a writer). Writes go through one connection owned by a writer
// goroutine that commits queued write transactions in groups: each caller's
// function runs in its own savepoint of a shared transaction, and one
// commit (one fsync) makes a whole group durable. A thousand agents
// checking in at once cost a handful of fsyncs, not a thousand, and
// writers never meet SQLITE_BUSY from each other. On PostgreSQL each
// replica's writer does the same over one connection, taking the write
// lock shared by all replicas once per group.
type Store struct {
	// DSN is where the store is: a SQLite file path or a postgres:// URL.
	DSN     string
	dialect Dialect
	db      *sql.DB // reads
	wdb     *sql.DB // the writer's one connection
	ldb     *sql.DB // PostgreSQL: the leases' one connection
	// wconn is wdb's one connection, the writer's for the store's life
	// (SQLite; nil on PostgreSQL), and wstmts its kept statements.
	wconn     *sql.Conn
	wstmts    stmtCache
	writes    chan *writeReq
	first     chan *writeReq // writes that go before the others (WithJobsFirst, Priority)
	pdb       *sql.DB        // priority reads (store_priority.go)
	preads    stmtCache      // pdb's kept statements
	reports   reportQueue    // check-in reports to write (store_reports.go)
	quit      chan struct{}  // closed by Close
	closed    chan struct{}  // closed when the writer has stopped
	closeOnce sync.Once
	closeErr  error

	c        caches    // the check-in's in-memory state (store_presence.go)
	reads    stmtCache // the read pool's kept statements (store_stmts.go)
	bus      bus.Bus   // tells other replicas' caches (store_replicas.go); nil: none
	flushing bool      // the flusher runs

	usedMu sync.Mutex
	usedAt map[int64]time.Time // when TokenUsed last wrote each token's use
}

type writeReq struct {
	ctx  context.Context
	fn   func(*sql.Tx) error
	done chan error
	// answer, when set, answers instead of done (a batch's write answers
	// each of its items: batchWrite).
	answer func(error)
	// An item of a JobBatch (WithJobsBatched): its batch, key and item.
	batch *JobBatch
	key   string
	item  any
}

// maxGroup bounds how many write transactions share one commit.
const maxGroup = 256

// Open opens (creating if needed) the database at path and migrates its
// schema to the current version. A path that is a postgres:// URL opens
// that PostgreSQL database instead (which must exist; the schema is created
// in the connection's search_path, normally "public").
func Open(ctx context.Context, path string) (*Store, error) {
	if IsPostgresURL(path) {
		return openPostgresStore(ctx, path)
	}
	q := url.Values{}
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Set("_txlock", "immediate")
	// The writer's statement and savepoint journals (what SQLite keeps to
	// undo one statement of a transaction, or one savepoint of a group
	// commit) in memory, not in temporary files: they hold the pages one
	// statement or one write of a group changed, and live only until it
	// ends, so a crash loses nothing of them that matters. A client-wide
	// upgrade's 10,000 job inserts wrote their pages there a second time
	// through write(2). Only the writer's: it also keeps sorts and
	// temporary indexes in memory, which the readers' large sorts should
	// not.
	wq := url.Values{"_pragma": append(slices.Clone(q["_pragma"]), "temp_store(MEMORY)"), "_txlock": q["_txlock"]}
	wdb, err := sql.Open("sqlite", "file:"+path+"?"+wq.Encode())
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	wdb.SetMaxOpenConns(1)
	wdb.SetMaxIdleConns(1)
	wdb.SetConnMaxIdleTime(0)
	wconn, err := wdb.Conn(ctx)
	if err != nil {
		wdb.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	// Unbuffered: a request is either taken by the writer or refused once
	// the store closes, never stranded in a buffer.
	s := &Store{DSN: path, dialect: SQLite, wdb: wdb, wconn: wconn, writes: make(chan *writeReq), first: make(chan *writeReq), quit: make(chan struct{}), closed: make(chan struct{})}
	s.reports.init()
	s.c.init(s)
	go s.writer()
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	// The read pool opens after migrating, so it sees the current schema.
	q.Del("_txlock")
	q.Add("_pragma", "query_only(1)")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	n := 4 + 2*runtime.NumCPU()
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(n)
	s.db = db
	if s.pdb, err = sql.Open("sqlite", "file:"+path+"?"+q.Encode()); err != nil {
		s.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	s.pdb.SetMaxOpenConns(priorityConns)
	s.pdb.SetMaxIdleConns(priorityConns)
	s.flushing = true
	go s.flusher()
	return s, nil
}

// openPostgresStore opens three pools: as on SQLite the writer's one
// connection (which waits for the write lock while other replicas write)
// and reads, which never wait for it; and one connection for the leases'
// statements, which wait neither for the writer nor behind thousands of
// agents' reads (store_leases.go).
func openPostgresStore(ctx context.Context, dsn string) (*Store, error) {
	n := 4 + 2*runtime.NumCPU()
	var pools [4]*sql.DB
	for i := range pools {
		db, err := openPostgres(dsn)
		if err != nil {
			return nil, err
		}
		db.SetMaxOpenConns(n)
		db.SetMaxIdleConns(n)
		pools[i] = db
	}
	for _, p := range pools[1:3] { // the writer's, the leases'
		p.SetMaxOpenConns(1)
		p.SetMaxIdleConns(1)
	}
	pools[3].SetMaxOpenConns(priorityConns)
	pools[3].SetMaxIdleConns(priorityConns)
	s := &Store{DSN: dsn, dialect: Postgres, db: pools[0], wdb: pools[1], ldb: pools[2], pdb: pools[3], writes: make(chan *writeReq), first: make(chan *writeReq), quit: make(chan struct{}), closed: make(chan struct{})}
	s.reports.init()
	s.c.init(s)
	go s.writer()
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("open store %s: %w", redactDSN(dsn), err)
	}
	s.flushing = true
	go s.flusher()
	return s, nil
}

// Dialect is the database the store runs on.
func (s *Store) Dialect() Dialect { return s.dialect }

// DB is the store's read pool: for what needs the database itself, e.g.
// a LISTEN connection on PostgreSQL (whose pool takes the store's ?
// placeholders too).
func (s *Store) DB() *sql.DB { return s.db }

// Close stops the writer and closes the database.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		if s.flushing {
			// The last check-in times, before the writer stops.
			close(s.c.flushStop)
			<-s.c.flushDone
			if err := s.FlushSeen(context.Background()); err != nil {
				s.closeErr = fmt.Errorf("writing the agents' last check-in times: %w", err)
			}
		}
		close(s.quit)
		<-s.closed
		s.reads.close()
		s.preads.close()
		s.wstmts.close()
		if s.wconn != nil {
			s.wconn.Close()
		}
		if s.db != nil {
			s.db.Close()
		}
		if s.pdb != nil {
			s.pdb.Close()
		}
		if s.ldb != nil {
			s.ldb.Close()
		}
		if err := s.wdb.Close(); err != nil {
			s.closeErr = err
		}
	})
	return s.closeErr
}

// Ping checks the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.db.PingContext(ctx) }

// migrations are the schema steps; migrations[i] takes user_version i to
// i+1. Released steps are never edited, only appended to.
var migrations = []string{
	// 1: tokens, releases, channels, TUF metadata, uploads, audit log.
	`
CREATE TABLE tokens (
	id         INTEGER PRIMARY KEY,
	name       TEXT NOT NULL,
	role       TEXT NOT NULL CHECK (role IN ('admin','release','support','viewer')),
	hash       TEXT NOT NULL UNIQUE,
	created_at TEXT NOT NULL,
	created_by TEXT NOT NULL,
	revoked_at TEXT
);
CREATE TABLE releases (
	product      TEXT NOT NULL,
	version      TEXT NOT NULL,
	target_path  TEXT NOT NULL UNIQUE,
	sha256       TEXT NOT NULL,
	length       INTEGER NOT NULL,
	upgrade_from TEXT NOT NULL DEFAULT '',
	notes        TEXT NOT NULL DEFAULT '',
	published_at TEXT NOT NULL,
	published_by TEXT NOT NULL,
	yanked_at    TEXT,
	yanked_by    TEXT,
	yank_reason  TEXT NOT NULL DEFAULT '',
	PRIMARY KEY (product, version)
);
CREATE TABLE release_channels (
	product  TEXT NOT NULL,
	version  TEXT NOT NULL,
	channel  TEXT NOT NULL,
	added_at TEXT NOT NULL,
	added_by TEXT NOT NULL,
	PRIMARY KEY (product, version, channel),
	FOREIGN KEY (product, version) REFERENCES releases (product, version)
);
CREATE INDEX release_channels_by_channel ON release_channels (channel);
CREATE TABLE tuf_metadata (
	role       TEXT NOT NULL,
	version    INTEGER NOT NULL,
	data       BLOB NOT NULL,
	created_at TEXT NOT NULL,
	PRIMARY KEY (role, version)
);
CREATE TABLE uploads (
	id         TEXT PRIMARY KEY,
	sha256     TEXT NOT NULL,
	length     INTEGER NOT NULL,
	manifest   TEXT NOT NULL,
	created_at TEXT NOT NULL,
	created_by TEXT NOT NULL
);
CREATE TABLE audit_log (
	id     INTEGER PRIMARY KEY,
	at     TEXT NOT NULL,
	actor  TEXT NOT NULL,
	action TEXT NOT NULL,
	object TEXT NOT NULL,
	detail TEXT NOT NULL DEFAULT ''
);
`,
	// 2: enrollment, sites, jobs and their events.
	`
CREATE TABLE enroll_tokens (
	id         INTEGER PRIMARY KEY,
	hash       TEXT NOT NULL UNIQUE,
	client     TEXT NOT NULL,
	expires_at TEXT NOT NULL,
	uses_left  INTEGER NOT NULL,
	created_at TEXT NOT NULL,
	created_by TEXT NOT NULL
);
CREATE TABLE sites (
	site              TEXT PRIMARY KEY,
	client            TEXT NOT NULL,
	product           TEXT NOT NULL,
	credential_hash   TEXT NOT NULL UNIQUE,
	installed_version TEXT NOT NULL DEFAULT '',
	target_version    TEXT NOT NULL DEFAULT '',
	state             TEXT NOT NULL DEFAULT 'idle',
	agent_version     TEXT NOT NULL DEFAULT '',
	os                TEXT NOT NULL DEFAULT '',
	arch              TEXT NOT NULL DEFAULT '',
	hostname          TEXT NOT NULL DEFAULT '',
	last_seen         TEXT,
	enrolled_at       TEXT NOT NULL
);
CREATE INDEX sites_by_client ON sites (client);
CREATE TABLE jobs (
	id               TEXT PRIMARY KEY,
	site             TEXT NOT NULL REFERENCES sites (site),
	product          TEXT NOT NULL,
	from_version     TEXT NOT NULL,
	to_version       TEXT NOT NULL,
	target           TEXT NOT NULL,
	result           TEXT NOT NULL CHECK (result IN ('pending','running','succeeded','rolled_back','failed')),
	reason           TEXT NOT NULL DEFAULT '',
	now              INTEGER NOT NULL DEFAULT 0,
	created_at       TEXT NOT NULL,
	created_by       TEXT NOT NULL,
	started_at       TEXT,
	ended_at         TEXT,
	last_progress_at TEXT NOT NULL
);
CREATE INDEX jobs_by_site ON jobs (site, created_at);
CREATE INDEX jobs_open ON jobs (result) WHERE result IN ('pending','running');
CREATE TABLE job_events (
	job_id      TEXT NOT NULL REFERENCES jobs (id),
	seq         INTEGER NOT NULL,
	state       TEXT NOT NULL,
	message     TEXT NOT NULL DEFAULT '',
	at          TEXT NOT NULL,
	received_at TEXT NOT NULL,
	PRIMARY KEY (job_id, seq)
);
`,
	// 3: drift, and what support confirmed for a job.
	`
ALTER TABLE sites ADD COLUMN drift TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN accept_drift INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN allow_downgrade INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN allow_irreversible INTEGER NOT NULL DEFAULT 0;
`,
	// 4: token expiry, last use and revocation; enroll tokens bound to a
	// site, allowed to replace it, revocable.
	`
ALTER TABLE tokens ADD COLUMN expires_at TEXT;
ALTER TABLE tokens ADD COLUMN last_used_at TEXT;
ALTER TABLE tokens ADD COLUMN revoked_by TEXT NOT NULL DEFAULT '';
CREATE INDEX tokens_by_name ON tokens (name);
ALTER TABLE enroll_tokens ADD COLUMN site TEXT NOT NULL DEFAULT '';
ALTER TABLE enroll_tokens ADD COLUMN replace_site INTEGER NOT NULL DEFAULT 0;
ALTER TABLE enroll_tokens ADD COLUMN revoked_at TEXT;
ALTER TABLE enroll_tokens ADD COLUMN revoked_by TEXT NOT NULL DEFAULT '';
`,
	// 5: when an agent was handed a job (it is then never
	// superseded), and the events a job's cap dropped (through which seq).
	`
ALTER TABLE jobs ADD COLUMN handed_out_at TEXT;
ALTER TABLE jobs ADD COLUMN events_dropped INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN events_dropped_through INTEGER NOT NULL DEFAULT 0;
`,
	// 6: the audit log filtered in SQL: by the actor's name (an operator
	// token's name; the whole actor for anything else), and by time as
	// Unix nanoseconds (RFC 3339 text with trimmed fractions does not
	// sort). Old rows: the name and token from the tokens table, the time
	// from the text (to the millisecond).
	`
ALTER TABLE audit_log ADD COLUMN actor_name TEXT NOT NULL DEFAULT '';
ALTER TABLE audit_log ADD COLUMN token_id INTEGER;
ALTER TABLE audit_log ADD COLUMN at_ns INTEGER NOT NULL DEFAULT 0;
UPDATE audit_log SET actor_name = actor,
	at_ns = COALESCE(CAST(round((julianday(at) - 2440587.5) * 86400000.0) AS INTEGER) * 1000000, 0);
CREATE INDEX audit_log_actor_backfill ON audit_log (actor);
UPDATE audit_log SET actor_name = t.name, token_id = t.id FROM tokens t
	WHERE audit_log.actor = t.name || ' (token ' || t.id || ', ' || t.role || ')';
DROP INDEX audit_log_actor_backfill;
CREATE INDEX audit_log_by_actor ON audit_log (actor_name);
CREATE INDEX audit_log_by_time ON audit_log (at_ns);
`,
	// 7: jobs per (site, product): a site runs its product and the agent
	// (product updateagent), and of each at most one job is in its
	// agent's hands (picked up and not ended). The hops of an upgrade are
	// several open jobs of one product, so the index bounds the picked-up
	// ones. Servers before handed out only a site's oldest open job, so
	// their rows satisfy it; should two be open anyway, the older ends.
	`
UPDATE jobs SET result = 'failed', reason = 'ended by the schema upgrade: a newer job of this site and product was picked up',
	ended_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), started_at = COALESCE(started_at, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
	WHERE result IN ('pending','running') AND handed_out_at IS NOT NULL
	AND EXISTS (SELECT 1 FROM jobs AS n WHERE n.site = jobs.site AND n.product = jobs.product AND n.rowid > jobs.rowid
		AND n.result IN ('pending','running') AND n.handed_out_at IS NOT NULL);
CREATE UNIQUE INDEX jobs_picked_up ON jobs (site, product) WHERE handed_out_at IS NOT NULL AND result IN ('pending','running');
`,
	// 8: maintenance windows (a site's, or its client's) and freezes
	// (server-wide, or one client's), times as Unix nanoseconds to compare
	// in SQL.
	`
CREATE TABLE windows (
	scope      TEXT NOT NULL CHECK (scope IN ('site','client')),
	name       TEXT NOT NULL,
	weekly     TEXT NOT NULL,
	zone       TEXT NOT NULL,
	updated_at TEXT NOT NULL,
	updated_by TEXT NOT NULL,
	PRIMARY KEY (scope, name)
);
CREATE TABLE freezes (
	id         INTEGER PRIMARY KEY,
	client     TEXT NOT NULL DEFAULT '',
	from_ns    INTEGER NOT NULL,
	to_ns      INTEGER NOT NULL,
	reason     TEXT NOT NULL,
	created_at TEXT NOT NULL,
	created_by TEXT NOT NULL
);
CREATE INDEX freezes_by_end ON freezes (to_ns);
`,
	// 9: the channel a site follows, and the pin (a version constraint)
	// that limits which of the channel's releases it takes.
	`
ALTER TABLE sites ADD COLUMN follow_channel TEXT NOT NULL DEFAULT '';
ALTER TABLE sites ADD COLUMN follow_pin TEXT NOT NULL DEFAULT '';
CREATE INDEX sites_by_follow ON sites (product, follow_channel) WHERE follow_channel != '';
`,
	// 10: rollouts: one release assigned to many sites in waves. A
	// rollout's sites and their wave; which of them started is what jobs
	// say (jobs.rollout_id, written in the transaction that creates the
	// job), so a server restarted mid-rollout never starts a site twice.
	// Times as Unix nanoseconds to compare in SQL.
	`
CREATE TABLE rollouts (
	id            INTEGER PRIMARY KEY,
	product       TEXT NOT NULL,
	version       TEXT NOT NULL,
	state         TEXT NOT NULL CHECK (state IN ('running','paused','completed','cancelled')),
	reason        TEXT NOT NULL DEFAULT '',
	waves         TEXT NOT NULL,
	canary        INTEGER NOT NULL DEFAULT 0,
	max_parallel  INTEGER NOT NULL,
	max_failures  TEXT NOT NULL,
	soak_ns       INTEGER NOT NULL DEFAULT 0,
	hold          INTEGER NOT NULL DEFAULT 0,
	wave          INTEGER NOT NULL DEFAULT 0,
	wave_at_ns    INTEGER NOT NULL DEFAULT 0,
	failures_seen INTEGER NOT NULL DEFAULT 0,
	created_at    TEXT NOT NULL,
	created_by    TEXT NOT NULL,
	ended_at      TEXT
);
CREATE INDEX rollouts_active ON rollouts (product) WHERE state IN ('running','paused');
CREATE TABLE rollout_sites (
	rollout_id INTEGER NOT NULL REFERENCES rollouts (id),
	site       TEXT NOT NULL REFERENCES sites (site),
	wave       INTEGER NOT NULL,
	pos        INTEGER NOT NULL,
	outcome    TEXT NOT NULL DEFAULT '' CHECK (outcome IN ('','succeeded','failed','cancelled')),
	reason     TEXT NOT NULL DEFAULT '',
	PRIMARY KEY (rollout_id, site)
);
CREATE INDEX rollout_sites_by_site ON rollout_sites (site);
ALTER TABLE jobs ADD COLUMN rollout_id INTEGER REFERENCES rollouts (id);
CREATE INDEX jobs_by_rollout ON jobs (rollout_id, site) WHERE rollout_id IS NOT NULL;
`,
	// 11: webhooks and their durable outbox: one row per (event, webhook)
	// written in the transaction of the change that caused the event,
	// deleted once the receiver answered 2xx. msg_id is the event's
	// webhook-id, the same on every retry; times are Unix nanoseconds.
	`
CREATE TABLE webhooks (
	id              INTEGER PRIMARY KEY,
	url             TEXT NOT NULL,
	events          TEXT NOT NULL DEFAULT '',
	secret          TEXT NOT NULL,
	created_at      TEXT NOT NULL,
	created_by      TEXT NOT NULL,
	disabled_at     TEXT,
	last_status     TEXT NOT NULL DEFAULT '',
	last_attempt_at TEXT,
	failures        INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE webhook_outbox (
	id          INTEGER PRIMARY KEY,
	webhook_id  INTEGER NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
	msg_id      TEXT NOT NULL,
	event_type  TEXT NOT NULL,
	body        BLOB NOT NULL,
	created_ns  INTEGER NOT NULL,
	attempts    INTEGER NOT NULL DEFAULT 0,
	next_ns     INTEGER NOT NULL,
	UNIQUE (webhook_id, msg_id)
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (next_ns);
`,
	// 12: indexes for the dashboard's fleet view: a page in client and
	// site order, the version distribution of each product, and the
	// states to filter by, without reading the sites' rows.
	`
DROP INDEX sites_by_client; -- sites_by_client_site serves its queries
CREATE INDEX sites_by_client_site ON sites (client, site);
CREATE INDEX sites_by_version ON sites (product, installed_version);
CREATE INDEX sites_by_state ON sites (state);
`,
	// 13: leases: a periodic job that must run once across replicas
	// (the re-signer, the rollout scheduler, the sweeper, the webhook
	// sender) runs on the replica holding its lease until expires_ns
	// (Unix nanoseconds: compared in SQL, which text times do not allow).
	`
CREATE TABLE leases (
	name       TEXT PRIMARY KEY,
	holder     TEXT NOT NULL,
	expires_ns BIGINT NOT NULL
);
`,
}

// SchemaVersion is the schema version this code writes.
var SchemaVersion = len(migrations)

func (s *Store) migrate(ctx context.Context) error {
	if s.dialect == Postgres {
		return s.migratePostgres(ctx)
	}
	var v int
	err := s.tx(ctx, func(tx *sql.Tx) error { return tx.QueryRow("PRAGMA user_version").Scan(&v) })
	if err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if v > len(migrations) {
		return fmt.Errorf("schema version %d is newer than this server knows (%d): run a newer updateserver", v, len(migrations))
	}
	for ; v < len(migrations); v++ {
		err := s.tx(ctx, func(tx *sql.Tx) error {
			if _, err := tx.Exec(migrations[v]); err != nil {
				return err
			}
			_, err := tx.Exec(fmt.Sprintf("PRAGMA user_version = %d", v+1))
			return err
		})
		if err != nil {
			return fmt.Errorf("migrate schema to version %d: %w", v+1, err)
		}
	}
	return nil
}

// tx runs fn in a write transaction: fn's changes are committed (durably)
// when tx returns nil, and none of them are when it returns an error. fn
// may run more than once (on PostgreSQL its group runs again after a
// serialization failure or deadlock): it must set, not accumulate, what it
// hands back to its caller, and keep its side effects for after tx returns.
// fn runs on the writer's goroutine inside a shared transaction: it must
// not call the store's write methods, and its statements must not use a
// context of their own (on PostgreSQL a cancelled one breaks the
// connection, and with it the whole group's transaction).
func (s *Store) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	if isPriority(ctx) { // an operator's (store_priority.go)
		return s.queue(ctx, s.first, fn)
	}
	return s.queue(ctx, s.writes, fn)
}

// queue is tx through the writer's queue q: s.writes, or s.first.
func (s *Store) queue(ctx context.Context, q chan *writeReq, fn func(*sql.Tx) error) error {
	r := &writeReq{ctx: ctx, fn: fn, done: make(chan error, 1)}
	select {
	case q <- r:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.quit:
		return ErrClosed
	}
	// Once queued, wait for the outcome even if ctx ends: the caller must
	// not guess whether its write landed.
	return <-r.done
}

// writer commits queued writes in groups until Close. Each group takes
// the check-in reports waiting at that moment along, first, as one write
// (store_reports.go), then the writes queued to go first
// (WithJobsFirst, an operator's: store_priority.go), then
// the others: reports and the first writes queue
// apart from the others, so that they never wait behind thousands of
// them, only for the group being committed. A group runs its writes for
// at most groupTime (commitGroup); those it had no time for lead the next
// group, after its reports and first writes. The items of a JobBatch
// queued one after the other (the agents' job-event reports) are one
// write of the group, applied together (batches, store_jobbatch.go), and
// count for less in its size (drainWrites).
func (s *Store) writer() {
	defer close(s.closed)
	var carry []*writeReq
	for {
		var group []*writeReq
		if len(carry) == 0 {
			select {
			case r := <-s.first:
				group = append(group, r)
			case r := <-s.writes:
				carry = append(carry, r)
			case <-s.reports.wake:
			case <-s.quit:
				// The reports queued before Close, whose check-ins were
				// answered without waiting for them.
				if reports := s.reports.close(); len(reports) > 0 {
					w, answer := s.reportsWrite(reports)
					s.commitGroup([]*writeReq{w})
					answer(<-w.done)
				}
				return
			}
		}
		group = drain(s.first, group, maxGroup)
		group = append(group, carry...)
		group = drainWrites(s.writes, group)
		reports := s.reports.take()
		group = s.batches(group)
		if len(reports) == 0 {
			if len(group) > 0 {
				carry = s.commitGroup(group)
			}
			continue
		}
		w, answer := s.reportsWrite(reports)
		carry = s.commitGroup(append([]*writeReq{w}, group...))
		answer(<-w.done)
	}
}

// drain adds to batch the requests already queued on ch, until batch
// holds limit.
func drain[T any](ch <-chan T, batch []T, limit int) []T {
	for len(batch) < limit {
		select {
		case r := <-ch:
			batch = append(batch, r)
		default:
			return batch
		}
	}
	return batch
}

// batchWeight is how many items of a JobBatch count as one write of a
// group (drainWrites): they are applied together, a handful of
// statements for up to maxBatch of them.
const batchWeight = 16

// drainWrites is drain of the writes lane, for a group of at most
// maxGroup writes, where batchWeight items of a JobBatch count as one.
func drainWrites(ch <-chan *writeReq, group []*writeReq) []*writeReq {
	weight := func(r *writeReq) int {
		if r.batch != nil {
			return 1
		}
		return batchWeight
	}
	n := 0
	for _, r := range group {
		n += weight(r)
	}
	for n < maxGroup*batchWeight {
		select {
		case r := <-ch:
			group = append(group, r)
			n += weight(r)
		default:
			return group
		}
	}
	return group
}

// commitGroup runs a group of writes in one transaction and answers each
// caller once it committed (or failed). A group that failed only because
// it met another transaction (PostgreSQL: serialization failure,
// deadlock) runs again, whole, a few times. rest is the group's writes
// it had no time for (runGroup), to run next.
func (s *Store) commitGroup(group []*writeReq) (rest []*writeReq) {
	var results []error
	var err error
	var n int
	for attempt := 1; ; attempt++ {
		n, results, err = s.runGroup(group)
		if err == nil || !retryable(err) || attempt == maxTxAttempts {
			break
		}
	}
	if err != nil {
		n = len(group)
	}
	for i, r := range group[:n] {
		if err != nil {
			r.reply(err)
		} else {
			r.reply(results[i])
		}
	}
	return group[n:]
}

// reply answers r's caller with err.
func (r *writeReq) reply(err error) {
	if r.answer != nil {
		r.answer(err)
		return
	}
	r.done <- err
}

// groupTime bounds how long a group runs its writes before it commits:
// the writer holds the write lock of every replica meanwhile, and with
// seven replicas taking turns, groups of 256 job transactions of a
// loaded machine (1-3 s each) made every replica's writes wait tens of
// seconds for the lock.
const groupTime = 250 * time.Millisecond

// runGroup runs group once in one transaction, each request in a
// savepoint of its own: a request that fails is rolled back to its
// savepoint, alone, and its error is its own; the others commit together.
// A request whose ctx ended before its turn is not run: its error is the
// ctx's. err is the whole group's failure (nothing committed): beginning,
// the write lock, a savepoint, the commit, or a request's error that says
// the transaction met another and should run again.
//
// It runs requests for at most groupTime (at least one), then commits: n
// is how many it ran, results their errors.
//
// One round trip a request moves the savepoint on: "RELEASE w; SAVEPOINT
// w" keeps the request before (on PostgreSQL a round trip each, which the
// writer's throughput is made of; on SQLite two kept statements).
func (s *Store) runGroup(group []*writeReq) (n int, results []error, err error) {
	tx, err := s.beginWrite()
	if err != nil {
		return 0, nil, err
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	if s.dialect == Postgres {
		if _, err := tx.Exec(writeLock); err != nil {
			return 0, nil, err
		}
	}
	start := time.Now() // the write lock held
	results = make([]error, len(group))
	n = len(group)
	if n == 1 {
		// Alone, a request needs no savepoint: should it fail, the
		// transaction is rolled back whole. A savepoint would copy every
		// page it changes to SQLite's sub-journal first (of a client-wide
		// upgrade's 10,000 jobs, about half its time).
		if results[0] = group[0].ctx.Err(); results[0] != nil {
			tx.Rollback()
			return n, results, nil
		}
		if results[0] = group[0].fn(tx); results[0] != nil {
			if retryable(results[0]) {
				return 0, nil, results[0]
			}
			tx.Rollback()
			return n, results, nil
		}
		if err := tx.Commit(); err != nil {
			return 0, nil, err
		}
		return n, results, nil
	}
	// last is the request whose changes the savepoint w holds, to be
	// kept; -1 when w is not set or holds none.
	last, set := -1, false
	// keep releases w over request last's changes. On PostgreSQL a
	// statement that failed (its error ignored) leaves the transaction
	// aborted: the release fails, and that request is rolled back like
	// any failed one.
	keep := func(qs ...string) error {
		if err := s.savepoint(tx, qs...); err != nil {
			results[last] = err
			if err := s.savepoint(tx, `ROLLBACK TO w`); err != nil {
				return err
			}
		}
		last = -1
		return nil
	}
	for i, r := range group {
		if i > 0 && time.Since(start) > groupTime {
			n = i // the rest in the next group
			break
		}
		if err := r.ctx.Err(); err != nil {
			results[i] = err
			continue
		}
		switch {
		case last >= 0:
			if err := keep(`RELEASE w`, `SAVEPOINT w`); err != nil {
				return 0, nil, err
			}
		case !set:
			if err := s.savepoint(tx, `SAVEPOINT w`); err != nil {
				return 0, nil, err
			}
			set = true
		}
		results[i] = r.fn(tx)
		if retryable(results[i]) {
			return 0, nil, results[i]
		}
		if results[i] == nil {
			last = i
		} else if err := s.savepoint(tx, `ROLLBACK TO w`); err != nil {
			return 0, nil, err
		}
	}
	if last >= 0 {
		if err := keep(`RELEASE w`); err != nil {
			return 0, nil, err
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, nil, err
	}
	return n, results, nil
}

// beginWrite begins the writer's transaction on its one connection.
func (s *Store) beginWrite() (*sql.Tx, error) {
	if s.wconn != nil {
		return s.wconn.BeginTx(context.Background(), nil)
	}
	return s.wdb.BeginTx(context.Background(), nil)
}

// savepoint runs the writer's savepoint statements qs: on SQLite each
// through the writer's kept statements (a prepared statement is one
// statement), on PostgreSQL all in one round trip.
func (s *Store) savepoint(tx *sql.Tx, qs ...string) error {
	if s.wconn == nil {
		_, err := tx.Exec(strings.Join(qs, "; "))
		return err
	}
	for _, q := range qs {
		if _, err := s.txExec(tx, q); err != nil {
			return err
		}
	}
	return nil
}

// collect scans every row of rows with scan, and closes rows. None is an
// empty slice, not nil (JSON []).
func collect[T any](rows *sql.Rows, scan func(scanner) (T, error)) ([]T, error) {
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// timeFormat is how the store writes times: RFC 3339 in UTC with all
// nine digits of the fraction. The store orders and compares times as
// text (ORDER BY created_at, last_seen < ?), and RFC3339Nano's trimmed
// fraction sorted two times of one second the wrong way round
// ("...:05.1Z" after "...:05.15Z", and "...:05Z" after both).
const timeFormat = "2006-01-02T15:04:05.000000000Z07:00"

func formatTime(t time.Time) string { return t.UTC().Format(timeFormat) }

// parseTime reads a time the store wrote, in timeFormat or, written
// before 28 Nov 2026, with its fraction trimmed.
func parseTime(s string) time.Time {
	t, _ := time.Parse(time.RFC3339Nano, s)
	return t
}

func nullTime(ns sql.NullString) *time.Time {
	if !ns.Valid {
		return nil
	}
	t := parseTime(ns.String)
	return &t
}
