package cli_test

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/dropless/dropless/pkg/protocol"
)

// TestUpgradeSaysWhatItDid: upgrade's answer tells a site already on the
// version (nothing to do) from one whose job waits because it is offline,
// and from one that gets its job now; --product updateagent assigns the
// agent's own version.
func TestUpgradeSaysWhatItDid(t *testing.T) {
	s := startServer(t)
	support := s.newToken(protocol.RoleSupport)
	s.publish(t, "1.0.0", "")
	s.publish(t, "1.1.0", "")
	tok := strings.TrimSpace(s.mustCLI(support, "enroll-token", "create", "--client", "acme", "--uses", "3"))
	ctx := context.Background()
	for site, v := range map[string]string{"acme-prod": "1.1.0", "acme-test": "1.0.0"} {
		a := s.enroll(t, tok, site, "acme")
		if _, err := a.Checkin(ctx, protocol.CheckinRequest{InstalledVersion: v, AgentVersion: "0.9.0", State: protocol.StateIdle}, 0); err != nil {
			t.Fatal(err)
		}
	}
	s.enroll(t, tok, "acme-dr", "acme") // never checks in

	out := s.mustCLI(support, "upgrade", "--client", "acme", "--to", "1.1.0")
	for _, want := range []string{
		`(?m)^acme-dr: job-\w+ \(nothing\) -> 1\.1\.0 \(pending: the site is offline; the job waits until it checks in\)$`,
		`(?m)^acme-test: job-\w+ 1\.0\.0 -> 1\.1\.0 \(pending\)$`,
		`(?m)^acme-prod: already on 1\.1\.0, nothing to do$`,
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("upgrade said:\n%s\nwant a line matching %s", out, want)
		}
	}
	if out := s.mustCLI(support, "upgrade", "--site", "acme-prod", "--to", "1.1.0"); out != "nothing to do: already on 1.1.0\n" {
		t.Errorf("upgrade of a site already on the version said %q", out)
	}

	dir := writeBundle(t, "", map[string]string{"files/linux_amd64/updateagent": "#!/bin/sh\n"})
	s.mustCLI(s.Admin, "release", "publish", "--product", "updateagent", "--version", "0.10.0", dir)
	out = s.mustCLI(support, "upgrade", "--site", "acme-prod", "--product", "updateagent", "--to", "0.10.0")
	if !regexp.MustCompile(`^acme-prod: job-\w+ 0\.9\.0 -> 0\.10\.0 \(pending\)\n$`).MatchString(out) {
		t.Errorf("upgrade of the agent said %q", out)
	}
	if r := s.cli(support, "upgrade", "--site", "acme-prod", "--product", "globex-crm", "--to", "1.1.0"); r.code != 1 || !strings.Contains(r.stderr, "runs acme-erp") {
		t.Errorf("upgrade of another product: exit %d, %s", r.code, r.stderr)
	}
}
