// Package engine is the agent's upgrade state machine and its durable
// journal: it moves a site from one release of the product to another so
// that the site ends on the old version or the new one, never in between,
// whatever happens to the agent meanwhile.
//
// A job goes through
//
//	downloading -> verified -> preflight -> stopping -> staging -> backing_up
//	    -> migrating -> switching -> starting -> health_check -> committed
//
// (backing_up only when the agent has a [database] or [[data]] paths,
// migrating only with a [database]; see dbsteps.go, data.go and the step
// interface). backing_up also snapshots the app's other data ([[data]]),
// put back exactly on rollback, after the database. A failure before stopping
// (download, verification, preflight) ends the job failed with the app
// untouched. Before downloading, the trust boundary (trust.go) refuses an
// assignment that asks for what the release team did not sign for this
// agent: another product, a signed version other than the assigned one,
// a version whose signed upgrade_from excludes the installed one, or a
// downgrade that the config's allow_downgrade and the assignment do not
// both allow (ErrUntrusted). Preflight refuses, before anything is
// touched: drift of the running
// release, its files, migrations and database schema (schema.go), unless
// the assignment accepts it (the reason starts with "drift:"; see
// agent/internal/drift), the database unreachable, too little free disk
// (the unpacked bundle plus the database backup), migration drift, and
// migrations without a down migration unless the manifest marks them
// irreversible and the assignment allows it. A failure from stopping on
// (a hook included; see hooks.go) rolls back: rolling_back -> rolled_back,
// the database restored first, then the files, then the old release
// started again and health-checked; a rollback that fails ends the job
// failed and the site's state failed, until a later job succeeds (the
// database backup is then kept for a person).
//
// Journal before side effects: every transition is a row change and an
// event row written in one SQLite transaction (synchronous=FULL, so the
// COMMIT is an fsync) before the state's action runs. On start, Recover
// reads the journal and maps the state of an unfinished job to one action:
//
//	downloading, verified, preflight  -> end failed ("interrupted before the app was touched")
//	stopping, staging                 -> roll back  -> rolled_back (old release healthy again)
//	backing_up                        -> roll back: no complete backup = the database was not
//	                                     touched; a complete one is restored (a no-op)
//	migrating                         -> roll back: the database restored from the backup
//	                                     (SQLite) or by the recorded downs (PostgreSQL; an Up
//	                                     cut short committed nothing), then the files
//	switching, starting, health_check -> roll back: the database, then the files
//	rolling_back                      -> roll back again (every step idempotent) -> rolled_back
//	committed                         -> finish the bookkeeping -> succeeded (new release)
//	anything else                     -> roll back
//
// and gives up (failed) after MaxRecoveries attempts at the same job.
//
// Install layout: <install_dir>/releases/<version>/ per kept release and
// <install_dir>/current pointing at the running one, switched atomically
// (a symlink renamed over the old one; a directory junction on Windows).
// Rolling back files is switching current back. The bundle is unpacked
// into releases/.<version>.staging during preflight, while the old release
// still runs, so the downtime is only stop -> switch -> start.
//
// What the agent keeps of each release's bundle (its files' hashes, its
// manifest, migrations and hooks) lives in <data_dir>/releases/<version>/
// (see relmeta.go); a job's database backup in <data_dir>/backups/<job>/,
// its [[data]] snapshot in <data_dir>/backups/<job>/data/.
//
// Events (job, seq, state, message, at) queue in the journal until
// MarkDelivered; ReadStatus reads the status from another process.
package engine
