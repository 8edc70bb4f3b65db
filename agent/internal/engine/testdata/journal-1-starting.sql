-- Journal schema 1, frozen: never edit (see journal_upgrade_test.go).
CREATE TABLE jobs (
	id              TEXT PRIMARY KEY,
	product         TEXT NOT NULL,
	from_version    TEXT NOT NULL,            -- installed when the job began ('' on a fresh site)
	to_version      TEXT NOT NULL,
	target          TEXT NOT NULL,            -- TUF target path
	state           INTEGER NOT NULL,         -- see state.go; values never change meaning
	result          TEXT NOT NULL DEFAULT '', -- '' while unfinished, else protocol.Result*
	reason          TEXT NOT NULL DEFAULT '', -- why it failed or rolled back
	attempts        INTEGER NOT NULL DEFAULT 0, -- recoveries after an interruption
	sha256          TEXT NOT NULL DEFAULT '', -- of the bundle, as the fetcher verified it
	length          INTEGER NOT NULL DEFAULT 0,
	prev_link       TEXT NOT NULL DEFAULT '', -- what current pointed at before (set at stopping)
	release_created INTEGER NOT NULL DEFAULT 0, -- staging created releases/<to_version>
	seq             INTEGER NOT NULL DEFAULT 0, -- seq of the job's last event
	created_at      INTEGER NOT NULL,         -- unix nanoseconds
	updated_at      INTEGER NOT NULL,
	ended_at        INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX jobs_unfinished ON jobs (result) WHERE result = '';
CREATE TABLE events (
	id        INTEGER PRIMARY KEY AUTOINCREMENT,
	job_id    TEXT NOT NULL REFERENCES jobs (id),
	seq       INTEGER NOT NULL,
	state     INTEGER NOT NULL,
	message   TEXT NOT NULL DEFAULT '',
	at        INTEGER NOT NULL,
	delivered INTEGER NOT NULL DEFAULT 0,
	UNIQUE (job_id, seq)
);
CREATE INDEX events_pending ON events (id) WHERE delivered = 0;
CREATE TABLE site (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
);

-- A site on 1.0.0 (job-1.0.0 succeeded) whose job to 1.1.0 was
-- interrupted in starting, as an agent with journal schema 1 left it:
-- current already switched to releases/1.1.0 (which staging created),
-- the old release stopped, the new one not started; the events from
-- stopping on not yet delivered to the server.
INSERT INTO jobs (id, product, from_version, to_version, target, state, result, reason, attempts,
	sha256, length, prev_link, release_created, seq, created_at, updated_at, ended_at)
VALUES ('job-1.0.0', 'acme-erp', '', '1.0.0', 'acme-erp/acme-erp-1.0.0.tar.gz', 12, 'succeeded', '', 0,
	'', 0, '', 1, 11, 1700000000000000000, 1700000001000000000, 1700000001000000000);
INSERT INTO jobs (id, product, from_version, to_version, target, state, result, reason, attempts,
	sha256, length, prev_link, release_created, seq, created_at, updated_at, ended_at)
VALUES ('job-1.1.0', 'acme-erp', '1.0.0', '1.1.0', 'acme-erp/acme-erp-1.1.0.tar.gz', 10, '', '', 0,
	'', 0, 'releases/1.0.0', 1, 7, 1700000100000000000, 1700000106000000000, 0);
INSERT INTO events (job_id, seq, state, message, at, delivered) VALUES
	('job-1.1.0', 1, 2, 'downloading acme-erp/acme-erp-1.1.0.tar.gz', 1700000100000000000, 1),
	('job-1.1.0', 2, 3, 'verified', 1700000101000000000, 1),
	('job-1.1.0', 3, 4, 'preflight', 1700000102000000000, 1),
	('job-1.1.0', 4, 5, 'stopping 1.0.0', 1700000103000000000, 1),
	('job-1.1.0', 5, 6, 'staging 1.1.0', 1700000104000000000, 0),
	('job-1.1.0', 6, 9, 'switching to 1.1.0', 1700000105000000000, 0),
	('job-1.1.0', 7, 10, 'starting 1.1.0', 1700000106000000000, 0);
INSERT INTO site (key, value) VALUES ('installed_version', '1.0.0');
