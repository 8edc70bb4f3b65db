CREATE TABLE audit_log (
	id     INTEGER PRIMARY KEY,
	at     TEXT NOT NULL,
	actor  TEXT NOT NULL,
	action TEXT NOT NULL,
	object TEXT NOT NULL,
	detail TEXT NOT NULL DEFAULT ''
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
CREATE TABLE tokens (
	id         INTEGER PRIMARY KEY,
	name       TEXT NOT NULL,
	role       TEXT NOT NULL CHECK (role IN ('admin','release','support','viewer')),
	hash       TEXT NOT NULL UNIQUE,
	created_at TEXT NOT NULL,
	created_by TEXT NOT NULL,
	revoked_at TEXT
);
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
