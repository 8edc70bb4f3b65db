CREATE TABLE audit_log (
	id     INTEGER PRIMARY KEY,
	at     TEXT NOT NULL,
	actor  TEXT NOT NULL,
	action TEXT NOT NULL,
	object TEXT NOT NULL,
	detail TEXT NOT NULL DEFAULT ''
, actor_name TEXT NOT NULL DEFAULT '', token_id INTEGER, at_ns INTEGER NOT NULL DEFAULT 0);
CREATE INDEX audit_log_by_actor ON audit_log (actor_name);
CREATE INDEX audit_log_by_time ON audit_log (at_ns);
CREATE TABLE enroll_tokens (
	id         INTEGER PRIMARY KEY,
	hash       TEXT NOT NULL UNIQUE,
	client     TEXT NOT NULL,
	expires_at TEXT NOT NULL,
	uses_left  INTEGER NOT NULL,
	created_at TEXT NOT NULL,
	created_by TEXT NOT NULL
, site TEXT NOT NULL DEFAULT '', replace_site INTEGER NOT NULL DEFAULT 0, revoked_at TEXT, revoked_by TEXT NOT NULL DEFAULT '');
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
CREATE TABLE job_events (
	job_id      TEXT NOT NULL REFERENCES jobs (id),
	seq         INTEGER NOT NULL,
	state       TEXT NOT NULL,
	message     TEXT NOT NULL DEFAULT '',
	at          TEXT NOT NULL,
	received_at TEXT NOT NULL,
	PRIMARY KEY (job_id, seq)
);
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
, accept_drift INTEGER NOT NULL DEFAULT 0, allow_downgrade INTEGER NOT NULL DEFAULT 0, allow_irreversible INTEGER NOT NULL DEFAULT 0, handed_out_at TEXT, events_dropped INTEGER NOT NULL DEFAULT 0, events_dropped_through INTEGER NOT NULL DEFAULT 0, rollout_id INTEGER REFERENCES rollouts (id));
CREATE INDEX jobs_by_rollout ON jobs (rollout_id, site) WHERE rollout_id IS NOT NULL;
CREATE INDEX jobs_by_site ON jobs (site, created_at);
CREATE INDEX jobs_open ON jobs (result) WHERE result IN ('pending','running');
CREATE UNIQUE INDEX jobs_picked_up ON jobs (site, product) WHERE handed_out_at IS NOT NULL AND result IN ('pending','running');
CREATE TABLE leases (
	name       TEXT PRIMARY KEY,
	holder     TEXT NOT NULL,
	expires_ns BIGINT NOT NULL
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
, drift TEXT NOT NULL DEFAULT '', follow_channel TEXT NOT NULL DEFAULT '', follow_pin TEXT NOT NULL DEFAULT '');
CREATE INDEX sites_by_client_site ON sites (client, site);
CREATE INDEX sites_by_follow ON sites (product, follow_channel) WHERE follow_channel != '';
CREATE INDEX sites_by_state ON sites (state);
CREATE INDEX sites_by_version ON sites (product, installed_version);
CREATE TABLE tokens (
	id         INTEGER PRIMARY KEY,
	name       TEXT NOT NULL,
	role       TEXT NOT NULL CHECK (role IN ('admin','release','support','viewer')),
	hash       TEXT NOT NULL UNIQUE,
	created_at TEXT NOT NULL,
	created_by TEXT NOT NULL,
	revoked_at TEXT
, expires_at TEXT, last_used_at TEXT, revoked_by TEXT NOT NULL DEFAULT '');
CREATE INDEX tokens_by_name ON tokens (name);
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
CREATE TABLE windows (
	scope      TEXT NOT NULL CHECK (scope IN ('site','client')),
	name       TEXT NOT NULL,
	weekly     TEXT NOT NULL,
	zone       TEXT NOT NULL,
	updated_at TEXT NOT NULL,
	updated_by TEXT NOT NULL,
	PRIMARY KEY (scope, name)
);
