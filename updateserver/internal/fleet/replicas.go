package fleet

import (
	"strings"

	"github.com/dropless/dropless/updateserver/internal/bus"
)

// What a job transaction tells the other replicas (Fleet.Bus), sent in
// the transaction so that they hear it exactly when it commits: the
// sites whose long-polls must read their new job, the jobs that ended
// (for the follower and the rollout scheduler, which run on one replica
// only), and that webhook outbox rows or rollouts changed.

// busMsgs is the bus messages of a job transaction's changes.
func (f *Fleet) busMsgs(r *jobRun) []bus.Msg {
	var wake, ended []string
	seen := map[string]bool{}
	for _, e := range r.out {
		switch e.Type {
		case JobCreated:
			if !seen[e.Site] {
				seen[e.Site] = true
				wake = append(wake, e.Site)
			}
		case JobEnded:
			flags := ""
			if e.Reason == reasonTimedOut {
				flags += "t"
			}
			if e.RolloutID != "" {
				flags += "r"
			}
			ended = append(ended, e.Product+"\t"+e.Site+"\t"+flags)
		}
	}
	msgs := append(bus.Lines(bus.Wake, wake), bus.Lines(bus.Ended, ended)...)
	if len(r.rollouts) > 0 {
		msgs = append(msgs, bus.Msg{Topic: bus.Rollouts})
	}
	if (f.Outbox != nil && len(r.out) > 0) || (f.RolloutOutbox != nil && len(r.rollouts) > 0) {
		msgs = append(msgs, bus.Msg{Topic: bus.Outbox})
	}
	return msgs
}

// Listen makes the fleet act on what the other replicas' job changes
// tell it through b: a new job wakes its site's long-poll here, an
// ended job wakes the follower and the rollout scheduler (if they run
// here), changed rollouts wake the scheduler. After a reconnect (Resync)
// every long-poll reads its assignment again, the follower makes a
// catch-up pass and the scheduler a pass. It returns the cancel of its
// subscriptions.
func (f *Fleet) Listen(b bus.Bus) (cancel func()) {
	cancels := []func(){
		b.Subscribe(bus.Wake, func(p string) {
			if p == bus.Resync {
				f.hub.notifyAll()
				return
			}
			for _, site := range strings.Split(p, "\n") {
				f.hub.notify(&wakeUp{site: site}) // no job: read it
			}
		}),
		b.Subscribe(bus.Ended, func(p string) {
			if p == bus.Resync {
				f.follow.mark("", "")
				f.kickRollouts()
				return
			}
			for _, line := range strings.Split(p, "\n") {
				parts := strings.Split(line, "\t")
				if len(parts) != 3 {
					continue
				}
				if !strings.Contains(parts[2], "t") {
					f.follow.mark(parts[0], parts[1])
				}
				if strings.Contains(parts[2], "r") {
					f.kickRollouts()
				}
			}
		}),
		b.Subscribe(bus.Rollouts, func(string) { f.kickRollouts() }),
	}
	return func() {
		for _, c := range cancels {
			c()
		}
	}
}
