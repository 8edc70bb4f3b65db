-- Rows of a server at schema version 3 (before token expiry, hand-outs and
-- jobs per product), as a dump: realistic and frozen. Never edit: a test
-- (fleet TestFrozenRowsSurvive) opens them with the current code. The
-- secrets behind the hashes: dlo_frozen-admin, dlo_frozen-support (both
-- live), dlo_frozen-old (revoked), dle_frozen-acme (enroll token),
-- dla_acme-prod, dla_acme-test, dla_globex-prod (agent credentials).
BEGIN;
INSERT INTO tokens (id, name, role, hash, created_at, created_by, revoked_at) VALUES
	(1, 'admin', 'admin', 'fbb9d2285afce3f290dd6600804e145825378bab83bbf83ec49189b8ebef1570', '2025-05-01T08:00:00Z', 'updateserver init', NULL),
	(2, 'support-desk', 'support', '37fbfc6a0c9547fa856ea471c8dd3209664d034e78edd56cb3508b65a06dd128', '2025-05-01T08:05:12.5Z', 'admin', NULL),
	(3, 'old-ci', 'release', 'c1c1d1bab23b8feb6bccccb3878c0c6f3da945fc96309f3f049c2eb76b3e27ac', '2025-05-01T08:06:00Z', 'admin', '2025-06-01T12:00:00Z');
INSERT INTO releases (product, version, target_path, sha256, length, upgrade_from, notes, published_at, published_by, yanked_at, yanked_by, yank_reason) VALUES
	('acme-erp', '1.0.0', 'acme-erp/acme-erp-1.0.0.tar.gz', '2711a313df7a8ebd2a7316f3bfb38158e0d93ff250e54d441695052ecb6da27f', 1048576, '', 'First release.', '2025-05-02T09:00:00Z', 'token:old-ci', NULL, NULL, ''),
	('acme-erp', '1.1.0', 'acme-erp/acme-erp-1.1.0.tar.gz', '5d895202021305b3236470b1e92db3deb3318afd9a022537e20e945f80dd9f0b', 1050000, '>= 1.0, < 1.1', 'Invoices in EUR.', '2025-05-20T09:00:00Z', 'token:old-ci', NULL, NULL, ''),
	('acme-erp', '1.1.1', 'acme-erp/acme-erp-1.1.1.tar.gz', '9b5e57a2510a67d60f0fbd8f859e2804246e83cb7d74beeb38e63ab77206e4f0', 1050100, '>= 1.0, < 1.2', 'Hot fix.', '2025-05-21T09:00:00Z', 'token:old-ci', '2025-05-21T15:00:00Z', 'token:admin', 'breaks the invoice export'),
	('acme-erp', '1.2.0', 'acme-erp/acme-erp-1.2.0.tar.gz', 'd3079c50f130aac1c003badca36878ebc2cf3e2d8508f966a7d73e8c314d3b6a', 1060000, '>= 1.1, < 1.2', 'Payroll.', '2025-06-10T09:00:00Z', 'token:old-ci', NULL, NULL, '');
INSERT INTO release_channels (product, version, channel, added_at, added_by) VALUES
	('acme-erp', '1.0.0', 'stable', '2025-05-02T09:00:00Z', 'token:old-ci'),
	('acme-erp', '1.1.0', 'beta', '2025-05-20T09:00:00Z', 'token:old-ci'),
	('acme-erp', '1.1.0', 'stable', '2025-05-27T10:00:00Z', 'token:admin'),
	('acme-erp', '1.2.0', 'beta', '2025-06-10T09:00:00Z', 'token:old-ci');
INSERT INTO tuf_metadata (role, version, data, created_at) VALUES
	('root', 1, X'7b7d', '2025-05-01T08:00:00Z'),
	('targets', 5, X'7b7d', '2025-06-10T09:00:00Z');
INSERT INTO uploads (id, sha256, length, manifest, created_at, created_by) VALUES
	('up-7f3a', '40adc24bca39d87fa92f4fa9de6bddbeb5377509223dd042211e6b18b80b6cfd', 1070000, '{"product":"acme-erp","version":"1.3.0"}', '2025-06-12T10:00:00Z', 'token:old-ci');
INSERT INTO enroll_tokens (id, hash, client, expires_at, uses_left, created_at, created_by) VALUES
	(1, '0a365ca98a8d86b1244d2e3c2bd701f5ea1236db1e9449b5bf16dfd7b8d8442f', 'acme', '2999-01-01T00:00:00Z', 3, '2025-05-03T10:00:00Z', 'token:support-desk');
INSERT INTO sites (site, client, product, credential_hash, installed_version, target_version, state, agent_version, os, arch, hostname, last_seen, enrolled_at, drift) VALUES
	('acme-prod', 'acme', 'acme-erp', '7d5ebd8707f0c889c018dff03c1146e4f132c47d08268a0656a5507959b3011c', '1.1.0', '1.2.0', 'idle', '0.3.0', 'linux', 'amd64', 'erp-prod-01', '2025-06-12T11:59:30Z', '2025-05-03T10:10:00Z', ''),
	('acme-test', 'acme', 'acme-erp', 'ef3b517a19cf352dd090dd0aa1be534face2f9dd04764010e8e2924718d2dc21', '1.0.0', '1.2.0', 'idle', '0.3.0', 'linux', 'amd64', 'erp-test-01', '2025-06-12T11:59:45Z', '2025-05-03T10:12:00Z', ''),
	('globex-prod', 'globex', 'acme-erp', '7ac4a15371da9ef9597e02f045333ace85575118edb16db17161734565778082', '1.0.0', '1.1.0', 'migrating', '0.3.0', 'windows', 'amd64', 'GLOBEX-APP', '2025-06-12T11:58:00Z', '2025-05-04T14:00:00Z', 'files/config/app.ini');
INSERT INTO jobs (id, site, product, from_version, to_version, target, result, reason, now, created_at, created_by, started_at, ended_at, last_progress_at, accept_drift, allow_downgrade, allow_irreversible) VALUES
	('job-0001', 'acme-prod', 'acme-erp', '1.0.0', '1.1.0', 'acme-erp/acme-erp-1.1.0.tar.gz', 'succeeded', '', 1, '2025-05-27T10:30:00Z', 'token:support-desk', '2025-05-27T10:30:02.25Z', '2025-05-27T10:31:40Z', '2025-05-27T10:31:40Z', 0, 0, 0),
	('job-0002', 'acme-prod', 'acme-erp', '1.1.0', '1.2.0', 'acme-erp/acme-erp-1.2.0.tar.gz', 'rolled_back', 'health check: GET /health answered 503 (1.1.0 runs again)', 0, '2025-06-11T22:00:00Z', 'token:support-desk', '2025-06-11T22:00:05Z', '2025-06-11T22:03:10Z', '2025-06-11T22:03:10Z', 0, 0, 0),
	('job-0003', 'acme-test', 'acme-erp', '1.0.0', '1.1.0', 'acme-erp/acme-erp-1.1.0.tar.gz', 'failed', 'cancelled: superseded by job job-0004', 0, '2025-06-12T09:00:00Z', 'token:support-desk', '2025-06-12T09:30:00Z', '2025-06-12T09:30:00Z', '2025-06-12T09:00:00Z', 0, 0, 0),
	('job-0004', 'acme-test', 'acme-erp', '1.0.0', '1.1.0', 'acme-erp/acme-erp-1.1.0.tar.gz', 'pending', '', 0, '2025-06-12T09:30:00Z', 'token:support-desk', NULL, NULL, '2025-06-12T09:30:00Z', 0, 0, 0),
	('job-0005', 'acme-test', 'acme-erp', '1.1.0', '1.2.0', 'acme-erp/acme-erp-1.2.0.tar.gz', 'pending', '', 0, '2025-06-12T09:30:00Z', 'token:support-desk', NULL, NULL, '2025-06-12T09:30:00Z', 0, 0, 0),
	('job-0006', 'globex-prod', 'acme-erp', '1.0.0', '1.1.0', 'acme-erp/acme-erp-1.1.0.tar.gz', 'running', '', 1, '2025-06-12T11:50:00Z', 'token:admin', '2025-06-12T11:50:03Z', NULL, '2025-06-12T11:57:59Z', 1, 0, 1);
INSERT INTO job_events (job_id, seq, state, message, at, received_at) VALUES
	('job-0001', 1, 'downloading', '', '2025-05-27T10:30:02.25Z', '2025-05-27T10:30:02.5Z'),
	('job-0001', 2, 'verified', 'sha256 ok', '2025-05-27T10:30:20Z', '2025-05-27T10:30:21Z'),
	('job-0001', 3, 'stopping', '', '2025-05-27T10:30:21Z', '2025-05-27T10:30:22Z'),
	('job-0001', 4, 'migrating', '0002_invoices_eur.up.sql', '2025-05-27T10:30:40Z', '2025-05-27T10:30:41Z'),
	('job-0001', 5, 'health_check', '', '2025-05-27T10:31:20Z', '2025-05-27T10:31:21Z'),
	('job-0001', 6, 'committed', '1.1.0 healthy', '2025-05-27T10:31:39Z', '2025-05-27T10:31:40Z'),
	('job-0002', 1, 'downloading', '', '2025-06-11T22:00:05Z', '2025-06-11T22:00:06Z'),
	('job-0002', 2, 'health_check', '', '2025-06-11T22:02:00Z', '2025-06-11T22:02:01Z'),
	('job-0002', 3, 'rolling_back', 'health check: GET /health answered 503', '2025-06-11T22:02:50Z', '2025-06-11T22:02:51Z'),
	('job-0002', 4, 'rolled_back', '1.1.0 runs again', '2025-06-11T22:03:09Z', '2025-06-11T22:03:10Z'),
	('job-0006', 1, 'downloading', '', '2025-06-12T11:50:03Z', '2025-06-12T11:50:04Z'),
	('job-0006', 2, 'migrating', '0002_invoices_eur.up.sql', '2025-06-12T11:57:58Z', '2025-06-12T11:57:59Z');
INSERT INTO audit_log (id, at, actor, action, object, detail) VALUES
	(1, '2025-05-01T08:05:12.5Z', 'token:admin', 'token.create', 'support-desk', 'role=support'),
	(2, '2025-05-02T09:00:00Z', 'token:old-ci', 'release.publish', 'acme-erp 1.0.0', 'channels=stable'),
	(3, '2025-05-21T15:00:00Z', 'token:admin', 'release.yank', 'acme-erp 1.1.1', 'breaks the invoice export'),
	(4, '2025-05-27T10:30:00Z', 'token:support-desk', 'upgrade', 'site acme-prod', 'to=1.1.0 now=true accept_drift=false allow_downgrade=false allow_irreversible=false jobs=1'),
	(5, '2025-06-12T09:30:00Z', 'token:support-desk', 'upgrade', 'site acme-test', 'to=1.2.0 now=false accept_drift=false allow_downgrade=false allow_irreversible=false jobs=2');
COMMIT;
