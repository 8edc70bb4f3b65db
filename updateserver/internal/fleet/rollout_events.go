package fleet

import (
	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/store"
)

// RolloutEvent is a change of a rollout that the people around it hear
// of (webhooks): it started, a wave started, it paused (with the reason:
// the andon cord), completed or was cancelled. Fleet passes them to
// RolloutOutbox inside the transaction that made the change.
type RolloutEvent struct {
	Kind             RolloutEventKind
	ID               int64
	Product, Version string
	// Wave is the wave that started, 1-based, of Waves.
	Wave, Waves int
	// Reason says why it paused or was cancelled; By who acted (the
	// rollout itself, "rollout N", when it paused or moved on by itself).
	Reason, By string
}

// RolloutEventKind is what happened to a rollout.
type RolloutEventKind string

// Kinds of RolloutEvent.
const (
	RolloutEventStarted     RolloutEventKind = "started"
	RolloutEventWaveStarted RolloutEventKind = "wave_started"
	RolloutEventPaused      RolloutEventKind = "paused"
	RolloutEventCompleted   RolloutEventKind = "completed"
	RolloutEventCancelled   RolloutEventKind = "cancelled"
)

// rolloutChanged records the events of a rollout's change from before to
// after (before.ID == 0: it was created), made by by.
func (r *jobRun) rolloutChanged(before, after store.RolloutRow, by string) {
	ev := func(k RolloutEventKind) RolloutEvent {
		waves := len(after.Waves)
		if after.Canary {
			waves++
		}
		return RolloutEvent{Kind: k, ID: after.ID, Product: after.Product, Version: after.Version,
			Wave: after.Wave + 1, Waves: waves, Reason: after.Reason, By: by}
	}
	if before.ID == 0 {
		r.rollouts = append(r.rollouts, ev(RolloutEventStarted), ev(RolloutEventWaveStarted))
		return
	}
	if after.State != before.State {
		switch after.State {
		case protocol.RolloutPaused:
			r.rollouts = append(r.rollouts, ev(RolloutEventPaused))
		case protocol.RolloutCompleted:
			r.rollouts = append(r.rollouts, ev(RolloutEventCompleted))
		case protocol.RolloutCancelled:
			r.rollouts = append(r.rollouts, ev(RolloutEventCancelled))
		}
	}
	if after.Wave != before.Wave && after.State != protocol.RolloutCompleted && after.State != protocol.RolloutCancelled {
		r.rollouts = append(r.rollouts, ev(RolloutEventWaveStarted))
	}
}
