package protocol

import "time"

// Agent API: the agent enrolls once with a token support created, then
// checks in (long-polling for its assignment) and sends the events of its
// jobs. Every call but enroll carries the agent's own credential as a
// bearer token; a credential reaches only its own site.

// Agent credential prefix, so a leaked one is recognisable.
const AgentCredentialPrefix = "dla_"

// EnrollRequest is the body of POST /api/v1/agent/enroll.
type EnrollRequest struct {
	Token    string `json:"token"` // the enroll token
	Site     string `json:"site"`
	Client   string `json:"client"`
	Product  string `json:"product"`
	Hostname string `json:"hostname,omitempty"`
}

// EnrollResponse carries the agent's own credential; the server keeps only
// its hash.
type EnrollResponse struct {
	Site       string `json:"site"`
	Credential string `json:"credential"`
}

// Agent states, as reported in check-ins and job events. The upgrade
// states are the engine's; stored values never change meaning.
const (
	StateIdle        = "idle"
	StateDownloading = "downloading"
	StateVerified    = "verified"
	StatePreflight   = "preflight"
	StateStopping    = "stopping"
	StateStaging     = "staging"
	StateBackingUp   = "backing_up"
	StateMigrating   = "migrating"
	StateSwitching   = "switching"
	StateStarting    = "starting"
	StateHealthCheck = "health_check"
	StateCommitted   = "committed"
	StateRollingBack = "rolling_back"
	StateRolledBack  = "rolled_back"
	StateFailed      = "failed"
)

// Job results, as history shows them.
const (
	ResultPending    = "pending"
	ResultRunning    = "running"
	ResultSucceeded  = "succeeded"
	ResultRolledBack = "rolled_back"
	ResultFailed     = "failed"
)

// CheckinRequest is the body of POST /api/v1/agent/checkin[?wait=SECONDS].
// With wait, the server holds the request until the site has an assignment
// the agent does not know yet, or wait runs out.
type CheckinRequest struct {
	// InstalledVersion is the version that passed its health check and
	// runs now ("" on a fresh site).
	InstalledVersion string `json:"installed_version"`
	AgentVersion     string `json:"agent_version"`
	OS               string `json:"os"`
	Arch             string `json:"arch"`
	Hostname         string `json:"hostname"`
	State            string `json:"state"`
	// Job is the job the agent is working on or finished last.
	Job *JobStatus `json:"job,omitempty"`
	// Drift lists what was changed by hand in the running release: its
	// files, migration records and database schema, one change a line;
	// lines starting with DriftReportedOnly do not block upgrades.
	Drift []string `json:"drift,omitempty"`
}

// JobStatus is the agent's view of one job.
type JobStatus struct {
	ID     string `json:"job_id"`
	From   string `json:"from"`
	To     string `json:"to"`
	State  string `json:"state"`
	Result string `json:"result,omitempty"` // set once the job ended
}

// CheckinResponse tells the agent what to do.
type CheckinResponse struct {
	// Assignment is the job to run, nil when there is nothing to do.
	Assignment *Assignment `json:"assignment,omitempty"`
	// PollSeconds is how long to wait before the next check-in.
	PollSeconds int `json:"poll_seconds"`
	// Window says whether the site's maintenance window is open.
	Window WindowStatus `json:"window"`
}

// Assignment is one job: move the site from From to Version.
type Assignment struct {
	JobID   string `json:"job_id"`
	Product string `json:"product"`
	Version string `json:"version"`
	// Target is the bundle's TUF target path; the agent trusts only what
	// the TUF client verified about it.
	Target string `json:"target"`
	From   string `json:"from"`
	// AcceptDrift: support accepted the site's drift for this job.
	AcceptDrift bool `json:"accept_drift,omitempty"`
	// AllowDowngrade: support confirmed going back to an older version
	// (down migrations).
	AllowDowngrade bool `json:"allow_downgrade,omitempty"`
	// AllowIrreversible: support accepted migrations that cannot be
	// rolled back (the bundle's manifest marks them irreversible).
	AllowIrreversible bool `json:"allow_irreversible,omitempty"`
}

// WindowStatus is the site's maintenance window as of the check-in.
type WindowStatus struct {
	Open     bool       `json:"open"`
	NextOpen *time.Time `json:"next_open,omitempty"`
}

// Event is one step of a job, sent by the agent. (job_id, seq) identifies
// it: the server stores each once, however often it is sent.
type Event struct {
	JobID   string    `json:"job_id"`
	Seq     int64     `json:"seq"`
	State   string    `json:"state"`
	Message string    `json:"message,omitempty"`
	At      time.Time `json:"at"`
}

// EventsRequest is the body of POST /api/v1/agent/events.
type EventsRequest struct {
	Events []Event `json:"events"`
}

// EventsResponse says how many events were new.
type EventsResponse struct {
	Accepted  int `json:"accepted"`
	Duplicate int `json:"duplicate"`
}

// Operator API for sites and jobs.

// CreateEnrollTokenRequest is the body of POST /api/v1/enroll-tokens.
type CreateEnrollTokenRequest struct {
	Client    string `json:"client"`
	ExpiresIn string `json:"expires_in,omitempty"` // Go duration; default 24h
	Uses      int    `json:"uses,omitempty"`       // default 1
	// Site binds the token to one site name. Replace (only with Site) lets
	// it enroll that site again when it is already enrolled for Client:
	// the old credential then stops working.
	Site    string `json:"site,omitempty"`
	Replace bool   `json:"replace,omitempty"`
}

// CreateEnrollTokenResponse carries the enroll token.
type CreateEnrollTokenResponse struct {
	ID        int64     `json:"id"`
	Token     string    `json:"token"`
	Client    string    `json:"client"`
	Site      string    `json:"site,omitempty"`
	Replace   bool      `json:"replace,omitempty"`
	ExpiresAt time.Time `json:"expires_at"`
	Uses      int       `json:"uses"`
}

// EnrollTokenInfo is an enroll token as GET /api/v1/enroll-tokens lists it:
// never the secret.
type EnrollTokenInfo struct {
	ID        int64      `json:"id"`
	Client    string     `json:"client"`
	Site      string     `json:"site"`
	Replace   bool       `json:"replace"`
	UsesLeft  int        `json:"uses_left"`
	ExpiresAt time.Time  `json:"expires_at"`
	CreatedAt time.Time  `json:"created_at"`
	CreatedBy string     `json:"created_by"`
	RevokedAt *time.Time `json:"revoked_at"`
	RevokedBy string     `json:"revoked_by,omitempty"`
}

// Site is one installation of a product at a client.
type Site struct {
	Site             string     `json:"site"`
	Client           string     `json:"client"`
	Product          string     `json:"product"`
	InstalledVersion string     `json:"installed_version"`
	TargetVersion    string     `json:"target_version"`
	State            string     `json:"state"`
	LastSeen         *time.Time `json:"last_seen"`
	AgentVersion     string     `json:"agent_version"`
	OS               string     `json:"os,omitempty"`
	Arch             string     `json:"arch,omitempty"`
	Hostname         string     `json:"hostname,omitempty"`
	EnrolledAt       time.Time  `json:"enrolled_at"`
	// Drift lists what was changed by hand in the running release.
	Drift      []string `json:"drift,omitempty"`
	CurrentJob *Job     `json:"current_job,omitempty"`
	LastJob    *Job     `json:"last_job,omitempty"`
	// WindowOpen: the site's maintenance window is open now (true when
	// it has none); NextWindow its next opening (RFC 3339, "" when open
	// now or always open). WaitReason says why a pending job waits (the
	// window, or a freeze and its reason).
	WindowOpen bool   `json:"window_open"`
	NextWindow string `json:"next_window"`
	WaitReason string `json:"wait_reason,omitempty"`
	// Channel is the channel the site follows and Pin the constraint
	// that limits which of its releases the site takes ("" for none).
	Channel string `json:"channel"`
	Pin     string `json:"pin"`
	// Online: the site checked in within three poll intervals.
	Online bool `json:"online"`
	// Step is the step of the job that runs (the state of its newest
	// event) while State is "upgrading".
	Step string `json:"step,omitempty"`
	// LastResult and LastReason are those of the site's newest ended
	// job ("" when none has ended).
	LastResult string `json:"last_result"`
	LastReason string `json:"last_reason,omitempty"`
}

// Site states support sees besides the agent's own (idle): a job of the
// site runs, or waits to start (for its agent, its window or a freeze).
const (
	SiteUpgrading = "upgrading"
	SitePending   = "pending"
)

// FollowRequest is the body of PUT /api/v1/follows: a site, or every
// site a client has, follows a channel, with an optional pin.
type FollowRequest struct {
	Site    string `json:"site,omitempty"`
	Client  string `json:"client,omitempty"`
	Channel string `json:"channel"`
	Pin     string `json:"pin,omitempty"`
}

// FollowResponse says which sites now follow (or no longer follow) a
// channel, and the jobs that following created at once.
type FollowResponse struct {
	Sites   []string `json:"sites"`
	Channel string   `json:"channel"`
	Pin     string   `json:"pin"`
	Jobs    []Job    `json:"jobs"`
}

// UpgradeRequest is the body of POST /api/v1/upgrades.
type UpgradeRequest struct {
	Site   string `json:"site,omitempty"`
	Client string `json:"client,omitempty"`
	// Product is the sites' own product ("" for it) or updateagent, the
	// agent itself.
	Product string `json:"product,omitempty"`
	To      string `json:"to"`
	Now     bool   `json:"now,omitempty"`
	// Reason says why Now overrides the window and freezes (audited).
	Reason            string `json:"reason,omitempty"`
	AcceptDrift       bool   `json:"accept_drift,omitempty"`
	AllowDowngrade    bool   `json:"allow_downgrade,omitempty"`
	AllowIrreversible bool   `json:"allow_irreversible,omitempty"`
	// Force installs a yanked release (support's explicit request).
	Force bool `json:"force,omitempty"`
}

// UpgradeResponse lists the jobs created.
type UpgradeResponse struct {
	Jobs []Job `json:"jobs"`
	// Done lists the sites already on the version: nothing to do there.
	Done []string `json:"done,omitempty"`
	// Offline lists the sites that got jobs but have not checked in for
	// three poll intervals (or never): their jobs wait until they do.
	Offline []string `json:"offline,omitempty"`
}

// Job is one site's attempt to move from one version to another.
type Job struct {
	ID        string     `json:"job_id"`
	Site      string     `json:"site"`
	Product   string     `json:"product"`
	From      string     `json:"from"`
	To        string     `json:"to"`
	Result    string     `json:"result"`
	Reason    string     `json:"reason,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	CreatedBy string     `json:"created_by"`
	StartedAt *time.Time `json:"started_at,omitempty"`
	EndedAt   *time.Time `json:"ended_at,omitempty"`
	// Events are the job's steps, in order: its first event and its
	// newest ones. The server keeps a bounded number per job;
	// EventsDropped counts those it dropped between the first and the
	// rest.
	Events        []Event `json:"events"`
	EventsDropped int     `json:"events_dropped,omitempty"`
	// DowntimeMS is how long the app was down, in milliseconds: from the
	// job's stopping event to the new version healthy (committed) or the
	// old one back (rolled_back); 0 for a job that ended without
	// stopping the app; absent while unknown (the job has not ended, or
	// its rollback failed and the app may still be down).
	DowntimeMS *int64 `json:"downtime_ms,omitempty"`
}

// ImportReportResponse says what importing an offline job report changed.
type ImportReportResponse struct {
	Site string `json:"site"`
	// Jobs lists the report's jobs; New says how many the server did not
	// know yet (a report imported twice adds nothing).
	Jobs []string `json:"jobs"`
	New  int      `json:"new"`
	// Events is how many events were new.
	Events int `json:"events"`
	// InstalledVersion is the site's installed version after the import.
	InstalledVersion string `json:"installed_version"`
}
