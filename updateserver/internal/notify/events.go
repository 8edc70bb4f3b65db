// Package notify is the server's webhooks: the events (jobs, releases,
// rollouts) as the JSON bodies receivers get, their Standard Webhooks
// signature, and the sender that delivers the store's outbox.
//
// Delivery is at least once: an event becomes an outbox row (one per
// webhook that wants it) in the store transaction of the change that
// caused it, so it is durable exactly when the change is; the Sender
// POSTs each row until its receiver answers 2xx, with backoff and jitter,
// across restarts, with the same webhook-id on every attempt. Receivers
// deduplicate by webhook-id. Nothing is posted from inside a request or a
// transaction: a slow or dead receiver delays only its own deliveries.
//
// How a change enqueues its events, by kind:
//   - jobs: Fleet.Outbox = JobOutbox (fleet calls it inside each job
//     transaction with the signals it will emit);
//   - releases: package publish passes ReleasePublished, ReleasePromoted
//     and ReleaseYanked (.Outbox()) to the store's Publish, Promote, Yank;
//   - rollouts: the rollout's store transaction calls the store's
//     enqueue(tx, now, []store.OutboxEvent{notify.RolloutPaused(r,
//     now).Outbox()}), or JobTx.Enqueue from a job transaction, or
//     Store.Enqueue when the change is not a store write. Then
//     Sender.Wake.
package notify

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/fleet"
	"github.com/dropless/dropless/updateserver/internal/store"
)

// Event types: what webhook --events patterns match.
const (
	JobStarted       = "job.started"
	JobSucceeded     = "job.succeeded"
	JobRolledBack    = "job.rolled_back"
	JobFailed        = "job.failed"
	ReleasePublished = "release.published"
	ReleasePromoted  = "release.promoted"
	ReleaseYanked    = "release.yanked"
	// Rollout events: defined here, enqueued by the rollouts.
	RolloutStartedType     = "rollout.started"
	RolloutWaveStartedType = "rollout.wave_started"
	RolloutPausedType      = "rollout.paused"
	RolloutCompletedType   = "rollout.completed"
	RolloutCancelledType   = "rollout.cancelled"
)

// Types lists every event type.
var Types = []string{JobStarted, JobSucceeded, JobRolledBack, JobFailed,
	ReleasePublished, ReleasePromoted, ReleaseYanked,
	RolloutStartedType, RolloutWaveStartedType, RolloutPausedType, RolloutCompletedType, RolloutCancelledType}

// ValidPattern checks a webhook's event pattern: a type, a family
// ("job.*") or "*".
func ValidPattern(p string) error {
	if p == "*" {
		return nil
	}
	for _, t := range Types {
		if p == t || (strings.HasSuffix(p, ".*") && strings.HasPrefix(t, strings.TrimSuffix(p, "*"))) {
			return nil
		}
	}
	return fmt.Errorf("event %q is unknown: use job.*, release.*, rollout.* or one of %s", p, strings.Join(Types, ", "))
}

// Event is one webhook message. Its JSON is what receivers get: the
// Standard Webhooks payload shape (type, timestamp, data) plus text, the
// line chat tools (Slack, Mattermost) show.
type Event struct {
	ID        string    `json:"-"`
	Type      string    `json:"type"`
	Timestamp time.Time `json:"timestamp"`
	Text      string    `json:"text"`
	Data      any       `json:"data"`
}

// Outbox is the event as the store's outbox keeps it.
func (e Event) Outbox() store.OutboxEvent {
	b, _ := json.Marshal(e) // plain structs of strings and numbers
	return store.OutboxEvent{ID: e.ID, Type: e.Type, Body: b}
}

func newEvent(typ string, at time.Time, data any, text string) Event {
	b := make([]byte, 12)
	rand.Read(b)
	return Event{ID: "msg_" + hex.EncodeToString(b), Type: typ, Timestamp: at.UTC(), Data: data, Text: text}
}

// chat escapes what Slack's text format gives meaning to (&, <, >:
// links and @channel mentions), so that a reason an agent sent stays text.
var chat = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace

// Job is the data of a job event.
type Job struct {
	JobID     string `json:"job_id"`
	Site      string `json:"site"`
	Client    string `json:"client"`
	Product   string `json:"product"`
	From      string `json:"from"`
	To        string `json:"to"`
	Result    string `json:"result"`
	Reason    string `json:"reason,omitempty"`
	CreatedBy string `json:"created_by"`
	// Amends: this end replaces an earlier "timed out" the server
	// concluded without the agent.
	Amends    bool   `json:"amends,omitempty"`
	RolloutID string `json:"rollout_id,omitempty"`
}

// JobEvent returns the webhook event of a job signal; false for signals
// that are not webhook events (a job created).
func JobEvent(s fleet.JobEvent) (Event, bool) {
	d := Job{JobID: s.JobID, Site: s.Site, Client: s.Client, Product: s.Product, From: s.From, To: s.To,
		Result: s.Result, Reason: s.Reason, CreatedBy: s.CreatedBy, Amends: s.Amends, RolloutID: s.RolloutID}
	what := fmt.Sprintf("%s (%s): %s %s → %s", s.Site, s.Client, s.Product, or(s.From, "(none)"), s.To)
	var typ, text string
	switch {
	case s.Type == fleet.JobStarted:
		typ, text = JobStarted, "Upgrade started: "+what
	case s.Type != fleet.JobEnded:
		return Event{}, false
	case s.Result == protocol.ResultSucceeded:
		typ, text = JobSucceeded, "Upgrade succeeded: "+what
	case s.Result == protocol.ResultRolledBack:
		typ, text = JobRolledBack, "Upgrade rolled back: "+what+": "+s.Reason
	default:
		typ, text = JobFailed, "Upgrade failed: "+what+": "+s.Reason
	}
	return newEvent(typ, s.At, d, chat(text+" (job "+s.JobID+")")), true
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// JobOutbox is fleet.Fleet's Outbox: it writes the webhook events of a
// job transaction's signals in that transaction.
func JobOutbox(tx *store.JobTx, now time.Time, sigs []fleet.JobEvent) error {
	var evs []store.OutboxEvent
	for _, s := range sigs {
		if e, ok := JobEvent(s); ok {
			evs = append(evs, e.Outbox())
		}
	}
	return tx.Enqueue(now, evs)
}

// Release is the data of a release event.
type Release struct {
	Product  string   `json:"product"`
	Version  string   `json:"version"`
	Channels []string `json:"channels"`
	// Channel is the one a promotion added.
	Channel string `json:"channel,omitempty"`
	Reason  string `json:"reason,omitempty"`
	By      string `json:"by"`
	SHA256  string `json:"sha256"`
}

func releaseData(r protocol.Release, by string) Release {
	ch := r.Channels
	if ch == nil {
		ch = []string{}
	}
	return Release{Product: r.Product, Version: r.Version, Channels: ch, By: by, SHA256: r.SHA256}
}

// ReleasePublishedEvent is release.published.
func ReleasePublishedEvent(r protocol.Release, by string, at time.Time) Event {
	text := fmt.Sprintf("Release published: %s %s", r.Product, r.Version)
	if len(r.Channels) > 0 {
		text += " on " + strings.Join(r.Channels, ", ")
	}
	return newEvent(ReleasePublished, at, releaseData(r, by), chat(text+" by "+by))
}

// ReleasePromotedEvent is release.promoted: r was added to channel.
func ReleasePromotedEvent(r protocol.Release, channel, by string, at time.Time) Event {
	d := releaseData(r, by)
	d.Channel = channel
	return newEvent(ReleasePromoted, at, d, chat(fmt.Sprintf("Release promoted: %s %s to %s by %s", r.Product, r.Version, channel, by)))
}

// ReleaseYankedEvent is release.yanked.
func ReleaseYankedEvent(r protocol.Release, reason, by string, at time.Time) Event {
	d := releaseData(r, by)
	d.Reason = reason
	text := fmt.Sprintf("Release yanked: %s %s by %s", r.Product, r.Version, by)
	if reason != "" {
		text += ": " + reason
	}
	return newEvent(ReleaseYanked, at, d, chat(text))
}

// Rollout is the data of a rollout event.
type Rollout struct {
	RolloutID string `json:"rollout_id"`
	Product   string `json:"product"`
	Version   string `json:"version"`
	// Wave is the wave that started (1-based; wave_started), Waves how
	// many there are.
	Wave  int `json:"wave,omitempty"`
	Waves int `json:"waves,omitempty"`
	// Reason says why a rollout paused (the andon cord) or was cancelled.
	Reason string `json:"reason,omitempty"`
	// By is who acted; "updateserver" when the rollout paused itself.
	By       string `json:"by,omitempty"`
	Failures int    `json:"failures,omitempty"`
}

func (r Rollout) what() string {
	return fmt.Sprintf("rollout %s of %s %s", r.RolloutID, r.Product, r.Version)
}

// RolloutStarted is rollout.started.
func RolloutStarted(r Rollout, at time.Time) Event {
	return newEvent(RolloutStartedType, at, r, chat("Started "+r.what()))
}

// RolloutWaveStarted is rollout.wave_started (r.Wave of r.Waves).
func RolloutWaveStarted(r Rollout, at time.Time) Event {
	return newEvent(RolloutWaveStartedType, at, r, chat(fmt.Sprintf("Wave %d of %d started: %s", r.Wave, r.Waves, r.what())))
}

// RolloutPaused is rollout.paused, with r.Reason: the andon cord, so the
// reason is in the text.
func RolloutPaused(r Rollout, at time.Time) Event {
	return newEvent(RolloutPausedType, at, r, chat("PAUSED "+r.what()+": "+or(r.Reason, "paused by "+r.By)))
}

// RolloutCompleted is rollout.completed.
func RolloutCompleted(r Rollout, at time.Time) Event {
	return newEvent(RolloutCompletedType, at, r, chat("Completed "+r.what()))
}

// RolloutCancelled is rollout.cancelled.
func RolloutCancelled(r Rollout, at time.Time) Event {
	text := "Cancelled " + r.what()
	if r.By != "" {
		text += " by " + r.By
	}
	return newEvent(RolloutCancelledType, at, r, chat(text))
}

// RolloutOutbox is fleet.Fleet's RolloutOutbox: it writes the webhook
// events of a transaction's rollout changes in that transaction.
func RolloutOutbox(tx *store.JobTx, now time.Time, evs []fleet.RolloutEvent) error {
	out := make([]store.OutboxEvent, 0, len(evs))
	for _, e := range evs {
		r := Rollout{RolloutID: strconv.FormatInt(e.ID, 10), Product: e.Product, Version: e.Version, Reason: e.Reason, By: e.By}
		var ev Event
		switch e.Kind {
		case fleet.RolloutEventStarted:
			ev = RolloutStarted(r, now)
		case fleet.RolloutEventWaveStarted:
			r.Wave, r.Waves = e.Wave, e.Waves
			ev = RolloutWaveStarted(r, now)
		case fleet.RolloutEventPaused:
			ev = RolloutPaused(r, now)
		case fleet.RolloutEventCompleted:
			r.Reason = ""
			ev = RolloutCompleted(r, now)
		case fleet.RolloutEventCancelled:
			ev = RolloutCancelled(r, now)
		default:
			continue
		}
		out = append(out, ev.Outbox())
	}
	return tx.Enqueue(now, out)
}
