// Package engine is the agent's upgrade state machine and its durable
// journal: it moves a site from one release of the product to another so
// that the site ends on the old version or the new one, never in between,
// whatever happens to the agent meanwhile.
//
// A job goes through
//
//	downloading -> verified -> preflight -> stopping -> staging -> switching
//	    -> starting -> health_check -> committed
//
// (backing_up and migrating, for the database, will slot in between
// staging and switching as more steps; see the step interface). A failure
// before stopping (download, verification, preflight) ends the job failed
// with the app untouched. A failure from stopping on rolls back:
// rolling_back -> rolled_back, the old release running again and
// health-checked; a rollback that fails ends the job failed and the site's
// state failed, until a later job succeeds.
//
// Journal before side effects: every transition is a row change and an
// event row written in one SQLite transaction (synchronous=FULL, so the
// COMMIT is an fsync) before the state's action runs. On start, Recover
// reads the journal and maps the state of an unfinished job to one action:
//
//	downloading, verified, preflight  -> end failed ("interrupted before the app was touched")
//	stopping .. health_check          -> roll back  -> rolled_back (old release healthy again)
//	rolling_back                      -> roll back again (idempotent) -> rolled_back
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
// Events (job, seq, state, message, at) queue in the journal until
// MarkDelivered; ReadStatus reads the status from another process.
package engine
