package protocol

import "time"

// Rollout states.
const (
	RolloutRunning   = "running"
	RolloutPaused    = "paused"
	RolloutCompleted = "completed"
	RolloutCancelled = "cancelled"
)

// Where a site of a rollout is (RolloutSite.Status).
const (
	// RolloutSiteWaiting: its wave has not reached it yet (or its window
	// is closed).
	RolloutSiteWaiting = "waiting"
	// RolloutSitePending, Running: its job was created, and has not
	// started / runs.
	RolloutSitePending = "pending"
	RolloutSiteRunning = "running"
	// RolloutSiteSucceeded: its job succeeded, or it ran the version
	// already.
	RolloutSiteSucceeded = "succeeded"
	// RolloutSiteFailed: its job failed, rolled back or timed out, or it
	// could not be planned (no upgrade path, drift).
	RolloutSiteFailed = "failed"
	// RolloutSiteCancelled: the rollout was cancelled before it started.
	RolloutSiteCancelled = "cancelled"
)

// RolloutRequest is the body of POST /api/v1/rollouts. The sites are
// those of exactly one of Channel, Clients and Sites, plus Canary.
type RolloutRequest struct {
	Product string `json:"product"`
	Version string `json:"version"`
	// Channel: the sites that follow this channel.
	Channel string   `json:"channel,omitempty"`
	Clients []string `json:"clients,omitempty"`
	Sites   []string `json:"sites,omitempty"`
	// Canary sites go first, as a wave of their own (wave 0).
	Canary []string `json:"canary,omitempty"`
	// Waves are cumulative percentages of all the rollout's sites,
	// increasing, the last 100; empty is [100].
	Waves []float64 `json:"waves,omitempty"`
	// MaxParallel bounds the sites upgrading at once; 0 is 10.
	MaxParallel int `json:"max_parallel,omitempty"`
	// MaxFailures: "N" (a count) or "N%" (of the sites started); the
	// rollout pauses itself when its failures reach it. Empty is "1".
	MaxFailures string `json:"max_failures,omitempty"`
	// SoakSeconds: how long after a wave ended the next one starts.
	SoakSeconds int64 `json:"soak_seconds,omitempty"`
	// HoldBetweenWaves: pause after each wave until someone resumes.
	HoldBetweenWaves bool `json:"hold_between_waves,omitempty"`
}

// Rollout is a rollout as list and show answer it.
type Rollout struct {
	ID      int64  `json:"id"`
	Product string `json:"product"`
	Version string `json:"version"`
	// State is running, paused, completed or cancelled.
	State string `json:"state"`
	// PauseReason says why a paused rollout paused (and which sites
	// failed); empty otherwise.
	PauseReason      string    `json:"pause_reason"`
	Waves            []float64 `json:"waves"`
	Canary           bool      `json:"canary"`
	MaxParallel      int       `json:"max_parallel"`
	MaxFailures      string    `json:"max_failures"`
	SoakSeconds      int64     `json:"soak_seconds"`
	HoldBetweenWaves bool      `json:"hold_between_waves"`
	// CurrentWave is the wave the rollout works on (0 is the canary
	// wave when there is one).
	CurrentWave int `json:"current_wave"`
	// NextWaveAt: the current wave's sites start from then (the wave
	// before ended, and the soak time passes).
	NextWaveAt *time.Time `json:"next_wave_at,omitempty"`
	// Counts over all its sites.
	Sites       int        `json:"sites"`
	Started     int        `json:"started"`
	Failures    int        `json:"failures"`
	FailedSites []string   `json:"failed_sites"`
	CreatedAt   time.Time  `json:"created_at"`
	CreatedBy   string     `json:"created_by"`
	EndedAt     *time.Time `json:"ended_at,omitempty"`
	// WaveDetail is each wave with its sites (rollout show only).
	WaveDetail []RolloutWave `json:"wave_detail,omitempty"`
}

// RolloutWave is one wave of a rollout and where its sites are.
type RolloutWave struct {
	Wave      int           `json:"wave"`
	Canary    bool          `json:"canary"`
	Waiting   int           `json:"waiting"`
	Pending   int           `json:"pending"`
	Running   int           `json:"running"`
	Succeeded int           `json:"succeeded"`
	Failed    int           `json:"failed"`
	Cancelled int           `json:"cancelled"`
	Sites     []RolloutSite `json:"sites"`
}

// RolloutSite is one site of a rollout.
type RolloutSite struct {
	Site string `json:"site"`
	// Status is waiting, pending, running, succeeded, failed or cancelled.
	Status string `json:"status"`
	// JobID is its newest job of the rollout ("" before it started).
	JobID string `json:"job_id,omitempty"`
	// Reason says why it failed, or that it ran the version already.
	Reason string `json:"reason,omitempty"`
}
