package cli_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
)

func (s *server) rollout(t *testing.T, token, id string) protocol.Rollout {
	t.Helper()
	var ro protocol.Rollout
	if err := json.Unmarshal([]byte(s.mustCLI(token, "rollout", "show", id, "--json")), &ro); err != nil {
		t.Fatal(err)
	}
	return ro
}

// TestRolloutCLI: support creates a rollout with a canary; the canary
// rolls back and the rollout pauses itself, saying which site failed;
// support resumes it (audited), then cancels it: the pending job ends
// cancelled at once. Usage errors and refusals are clear.
func TestRolloutCLI(t *testing.T) {
	s := startServer(t)
	support := s.newToken(protocol.RoleSupport)
	viewer := s.newToken(protocol.RoleViewer)
	s.publish(t, "1.0.0", "")
	s.publish(t, "1.1.0", "")
	tok := strings.TrimSpace(s.mustCLI(support, "enroll-token", "create", "--client", "acme", "--uses", "3"))
	ctx := context.Background()
	report := protocol.CheckinRequest{InstalledVersion: "1.0.0", AgentVersion: "test", OS: "linux", Arch: "amd64", Hostname: "h", State: protocol.StateIdle}
	agents := map[string]*simAgent{}
	for _, name := range []string{"acme-a", "acme-b", "acme-c"} {
		agents[name] = s.enroll(t, tok, name, "acme")
		if _, err := agents[name].Checkin(ctx, report, 0); err != nil {
			t.Fatal(err)
		}
	}

	usage := [][]string{
		{"rollout", "create", "--version", "1.1.0", "--client", "acme"},
		{"rollout", "create", "--product", "acme-erp", "--version", "1.1.0"},
		{"rollout", "create", "--product", "acme-erp", "--version", "1.1.0", "--client", "acme", "--site", "acme-a"},
		{"rollout", "create", "--product", "acme-erp", "--version", "1.1.0", "--client", "acme", "--waves", "50%"},
		{"rollout", "create", "--product", "acme-erp", "--version", "1.1.0", "--client", "acme", "--max-failures", "0"},
		{"rollout", "create", "--product", "acme-erp", "--version", "1.1.0", "--client", "acme", "--max-parallel", "0"},
		{"rollout", "show", "one"},
		{"rollout", "pause"},
	}
	for _, args := range usage {
		if r := s.cli(support, args...); r.code != 2 || r.stderr == "" {
			t.Errorf("updateserver %s: exit %d (%q), want a usage error", strings.Join(args, " "), r.code, r.stderr)
		}
	}
	if r := s.cli(support, "rollout", "create", "--product", "acme-erp", "--version", "1.1.0", "--channel", "stable"); r.code != 1 || !strings.Contains(r.stderr, "no site of acme-erp follows channel stable") {
		t.Errorf("--channel nobody follows: exit %d %q, want a refusal naming the channel", r.code, r.stderr)
	}
	if r := s.cli(viewer, "rollout", "create", "--product", "acme-erp", "--version", "1.1.0", "--client", "acme"); r.code != 1 {
		t.Errorf("a viewer created a rollout: exit %d", r.code)
	}

	id := strings.TrimSpace(s.mustCLI(support, "rollout", "create", "--product", "acme-erp", "--version", "1.1.0", "--client", "acme",
		"--canary", "acme-a", "--waves", "50%,100%", "--max-parallel", "1"))
	if id != "1" {
		t.Fatalf("rollout create printed %q, want its ID", id)
	}
	if r := s.cli(support, "rollout", "create", "--product", "acme-erp", "--version", "1.1.0", "--site", "acme-c"); r.code != 1 || !strings.Contains(r.stderr, "site acme-c is already in rollout 1") {
		t.Errorf("an overlapping rollout: exit %d %q, want refused naming the site and the rollout", r.code, r.stderr)
	}

	// The canary gets its job and rolls back.
	var asg *protocol.Assignment
	waitFor(t, func() bool {
		resp, err := agents["acme-a"].Checkin(ctx, report, 0)
		asg = resp.Assignment
		return err == nil && asg != nil
	})
	if _, err := agents["acme-a"].SendEvents(ctx, []protocol.Event{
		{JobID: asg.JobID, Seq: 1, State: "stopping", At: time.Now()},
		{JobID: asg.JobID, Seq: 2, State: "rolling_back", Message: "health check failed", At: time.Now()},
		{JobID: asg.JobID, Seq: 3, State: "rolled_back", Message: "1.0.0 runs again", At: time.Now()},
	}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return s.rollout(t, viewer, id).State == protocol.RolloutPaused })
	show := s.mustCLI(viewer, "rollout", "show", id)
	for _, want := range []string{"rollout 1: acme-erp 1.1.0, paused", "paused: 1 failures of 1 sites started", "acme-a (job", "health check failed",
		"0 (canary)", "acme-b", "waiting"} {
		if !strings.Contains(show, want) {
			t.Errorf("rollout show lacks %q:\n%s", want, show)
		}
	}
	for _, st := range []string{"acme-b", "acme-c"} {
		if jobs := s.history(t, viewer, st); len(jobs) != 0 {
			t.Errorf("%s has %d jobs while the canary failed", st, len(jobs))
		}
	}
	if r := s.cli(support, "rollout", "pause", id); r.code != 1 || !strings.Contains(r.stderr, "rollout 1 is paused") {
		t.Errorf("pausing a paused rollout: exit %d %q", r.code, r.stderr)
	}

	if out := s.mustCLI(support, "rollout", "resume", id); strings.TrimSpace(out) != "rollout 1 resumed" {
		t.Errorf("resume said %q", out)
	}
	audit := s.mustCLI(s.Admin, "audit", "list", "--json")
	if !strings.Contains(audit, `"action": "rollout.resume"`) && !strings.Contains(audit, `"action":"rollout.resume"`) {
		t.Errorf("the resume is not audited:\n%s", audit)
	}
	waitFor(t, func() bool { return len(s.history(t, viewer, "acme-b")) == 1 })
	if out := s.mustCLI(support, "rollout", "cancel", id); strings.TrimSpace(out) != "rollout 1 cancelled" {
		t.Errorf("cancel said %q", out)
	}
	ro := s.rollout(t, viewer, id)
	if ro.State != protocol.RolloutCancelled || ro.Failures != 2 {
		t.Fatalf("after cancel: %s with %d failures, want cancelled, the canary and acme-b's cancelled job", ro.State, ro.Failures)
	}
	if j := s.history(t, viewer, "acme-b")[0]; j.Result != protocol.ResultFailed || j.Reason != "cancelled: rollout 1 was cancelled by "+ro.CreatedBy {
		t.Errorf("acme-b's job: %s (%q), want cancelled by the rollout's cancel", j.Result, j.Reason)
	}
	var list []protocol.Rollout
	if err := json.Unmarshal([]byte(s.mustCLI(viewer, "rollout", "list", "--json")), &list); err != nil || len(list) != 1 || list[0].State != protocol.RolloutCancelled {
		t.Errorf("rollout list: %+v %v", list, err)
	}
	if r := s.cli(viewer, "rollout", "show", "99"); r.code != 1 || !strings.Contains(r.stderr, "no rollout has ID 99") {
		t.Errorf("unknown rollout: exit %d %q", r.code, r.stderr)
	}
}
