//go:build unix

package engine

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/dropless/dropless/pkg/protocol"
)

// The trust boundary (trust.go): an assignment that asks for what the
// release team did not sign for this agent, or for a downgrade its config
// does not allow, ends failed before anything is downloaded, the app
// untouched (the same process runs), with a reason naming the signed fact.
func TestTrustBoundaryRefuses(t *testing.T) {
	tests := []struct {
		name string
		// configDowngrade is the agent's allow_downgrade.
		configDowngrade bool
		setup           func(t *testing.T, s *testSite) protocol.Assignment
		wantReason      string
	}{
		{
			name: "signed target of another product",
			setup: func(t *testing.T, s *testSite) protocol.Assignment {
				return s.release(t, "2.0.0", "product=other-erp")
			},
			wantReason: `refused: the signed target acme-erp/acme-erp-2.0.0.tar.gz is of product "other-erp", this agent manages acme-erp: the server assigned another product's release; check the server (it may be compromised)`,
		},
		{
			name: "assignment of another product",
			setup: func(t *testing.T, s *testSite) protocol.Assignment {
				a := s.release(t, "2.0.0", "product=other-erp")
				a.Product = "other-erp"
				return a
			},
			wantReason: `refused: the assignment is for product "other-erp", this agent manages acme-erp: the server assigned another product's release`,
		},
		{
			name: "signed version differs from the assigned version",
			setup: func(t *testing.T, s *testSite) protocol.Assignment {
				return s.release(t, "1.1.0", "says=1.2.0")
			},
			wantReason: `refused: the signed target acme-erp/acme-erp-1.1.0.tar.gz is version "1.2.0", the assignment says 1.1.0: the server's assignment does not match what the release team signed`,
		},
		{
			name: "signed upgrade_from excludes the installed version",
			setup: func(t *testing.T, s *testSite) protocol.Assignment {
				return s.release(t, "2.0.0", "upgrade_from=>= 1.5, < 2.0")
			},
			wantReason: `refused: acme-erp 2.0.0 cannot upgrade from the installed 1.0.0: its signed upgrade_from is ">= 1.5, < 2.0"`,
		},
		{
			name: "a false From does not satisfy upgrade_from",
			setup: func(t *testing.T, s *testSite) protocol.Assignment {
				a := s.release(t, "2.0.0", "upgrade_from=>= 1.5, < 2.0")
				a.From = "1.9.0" // the journal says 1.0.0 is installed
				return a
			},
			wantReason: `refused: acme-erp 2.0.0 cannot upgrade from the installed 1.0.0: its signed upgrade_from is ">= 1.5, < 2.0"`,
		},
		{
			name: "downgrade asked, config does not allow",
			setup: func(t *testing.T, s *testSite) protocol.Assignment {
				a := s.release(t, "0.9.0")
				a.AllowDowngrade = true
				return a
			},
			wantReason: "refused: acme-erp 0.9.0 is older than the installed 1.0.0 and this agent's config does not allow downgrades (the assignment asks for it): set allow_downgrade = true in the agent's config if this site may go back",
		},
		{
			name: "downgrade not asked, config does not allow",
			setup: func(t *testing.T, s *testSite) protocol.Assignment {
				return s.release(t, "0.9.0")
			},
			wantReason: "refused: acme-erp 0.9.0 is older than the installed 1.0.0 and this agent's config does not allow downgrades (the assignment does not ask for it either)",
		},
		{
			name:            "downgrade allowed by config, not asked by the assignment",
			configDowngrade: true,
			setup: func(t *testing.T, s *testSite) protocol.Assignment {
				return s.release(t, "0.9.0")
			},
			wantReason: "refused: acme-erp 0.9.0 is older than the installed 1.0.0 and the assignment does not ask for a downgrade: a downgrade runs down migrations; support confirms one with updateserver upgrade --allow-downgrade",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newSite(t)
			s.AllowDowngrade = tt.configDowngrade
			e := s.open(t)
			s.install(t, e, s.release(t, "1.0.0"))
			pid := s.pid()
			a := tt.setup(t, s)
			a.JobID = "job-refused"

			st, err := e.Run(context.Background(), a)
			if err != nil || st.Result != protocol.ResultFailed || st.State != protocol.StateFailed {
				t.Fatalf("Run = %+v, %v; want failed", st, err)
			}
			if got := e.Status().LastError; !strings.Contains(got, tt.wantReason) {
				t.Errorf("reason %q\nwant %q", got, tt.wantReason)
			}
			states, evs := checkEvents(t, e, a.JobID)
			if slices.Contains(states, protocol.StateStopping) || !slices.Equal(states, []string{protocol.StateDownloading, protocol.StateFailed}) {
				t.Errorf("events %v: want downloading, failed", states)
			}
			if last := evs[len(evs)-1].Message; !strings.Contains(last, tt.wantReason) || !strings.HasSuffix(last, "(the app was not touched)") {
				t.Errorf("failed event says %q", last)
			}
			if s.pid() != pid {
				t.Errorf("the app was restarted: pid %s, was %s", s.pid(), pid)
			}
			s.Fetcher.mu.Lock()
			downloaded := slices.Clone(s.Fetcher.downloaded)
			s.Fetcher.mu.Unlock()
			if slices.Contains(downloaded, a.Target) {
				t.Errorf("the refused target was downloaded (downloads %v)", downloaded)
			}
			s.checkConsistent(t, e, "1.0.0")
			if got := s.releases(t); !slices.Equal(got, []string{"1.0.0"}) {
				t.Errorf("releases/ holds %v", got)
			}
			rec, err := e.j.job(context.Background(), a.JobID)
			if err != nil {
				t.Fatal(err)
			}
			if rec.Product != product {
				t.Errorf("the job's product is %q, want the configured %q", rec.Product, product)
			}
		})
	}
}

// A downgrade goes through only where the agent's config allows it and
// the assignment asks for it; allowed, it is not held to upgrade_from
// (which says what a release upgrades from).
func TestTrustBoundaryAllowsConfirmedDowngrade(t *testing.T) {
	s := newSite(t)
	s.AllowDowngrade = true
	e := s.open(t)
	s.install(t, e, s.release(t, "1.0.0"))
	back := s.release(t, "0.9.0", "upgrade_from=< 0.9")
	back.AllowDowngrade = true
	s.install(t, e, back)
	s.checkConsistent(t, e, "0.9.0")
}

// Each refusal is ErrUntrusted, and only the refusals are.
func TestPolicyErrUntrusted(t *testing.T) {
	a := protocol.Assignment{JobID: "j", Product: "acme-erp", Version: "2.0.0", Target: "acme-erp/acme-erp-2.0.0.tar.gz"}
	signed := protocol.TargetCustom{Product: "acme-erp", Version: "2.0.0", UpgradeFrom: ">= 1.0"}
	tests := []struct {
		name      string
		p         policy
		edit      func(a *protocol.Assignment, c *protocol.TargetCustom)
		installed string
		want      bool // refused
	}{
		{"all match", policy{product: "acme-erp"}, nil, "1.0.0", false},
		{"fresh site", policy{product: "acme-erp"}, func(a *protocol.Assignment, c *protocol.TargetCustom) { c.UpgradeFrom = ">= 9" }, "", false},
		{"signed product", policy{product: "acme-erp"}, func(a *protocol.Assignment, c *protocol.TargetCustom) { c.Product = "b" }, "1.0.0", true},
		{"signed product empty", policy{product: "acme-erp"}, func(a *protocol.Assignment, c *protocol.TargetCustom) { c.Product = "" }, "1.0.0", true},
		{"signed version", policy{product: "acme-erp"}, func(a *protocol.Assignment, c *protocol.TargetCustom) { c.Version = "2.0.1" }, "1.0.0", true},
		{"upgrade_from", policy{product: "acme-erp"}, func(a *protocol.Assignment, c *protocol.TargetCustom) { c.UpgradeFrom = ">= 1.5" }, "1.0.0", true},
		{"upgrade_from unreadable", policy{product: "acme-erp"}, func(a *protocol.Assignment, c *protocol.TargetCustom) { c.UpgradeFrom = "~~" }, "1.0.0", true},
		{"downgrade, config only", policy{product: "acme-erp", allowDowngrade: true}, nil, "3.0.0", true},
		{"downgrade, assignment only", policy{product: "acme-erp"}, func(a *protocol.Assignment, c *protocol.TargetCustom) { a.AllowDowngrade = true }, "3.0.0", true},
		{"downgrade, both", policy{product: "acme-erp", allowDowngrade: true}, func(a *protocol.Assignment, c *protocol.TargetCustom) { a.AllowDowngrade = true }, "3.0.0", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, c := a, signed
			if tt.edit != nil {
				tt.edit(&a, &c)
			}
			err := tt.p.checkRequest(a)
			if err == nil {
				err = tt.p.checkSigned(a, tt.installed, c)
			}
			if got := errors.Is(err, ErrUntrusted); got != tt.want {
				t.Fatalf("checkSigned = %v; refused %v, want %v", err, got, tt.want)
			}
		})
	}
	if p := (policy{product: "acme-erp"}); p.checkRequest(protocol.Assignment{Product: "other"}) == nil {
		t.Error("an assignment of another product passed checkRequest")
	}
	for _, tt := range []struct {
		config, assignment, want bool
	}{{false, false, false}, {false, true, false}, {true, false, false}, {true, true, true}} {
		if got := (policy{allowDowngrade: tt.config}).downgradeAllowed(protocol.Assignment{AllowDowngrade: tt.assignment}); got != tt.want {
			t.Errorf("downgradeAllowed(config %v, assignment %v) = %v", tt.config, tt.assignment, got)
		}
	}
}

// The migration planner gets the effective downgrade permission (config
// and assignment), never the assignment's alone: a newer bundle that
// lacks migrations the database has does not get them taken down because
// the assignment says allow_downgrade.
func TestTrustMigrationDowngradeNeedsConfig(t *testing.T) {
	eachDB(t, func(t *testing.T, s *testSite) {
		e := s.open(t)
		s.install(t, e, s.releaseWith(t, "1.0.0", relSpec{Migrations: migrations110}))
		pid := s.pid()
		a := s.releaseWith(t, "1.1.0", relSpec{Migrations: migrations100})
		a.AllowDowngrade = true
		st, err := e.Run(context.Background(), a)
		if err != nil || st.Result != protocol.ResultFailed {
			t.Fatalf("Run = %+v, %v; want failed", st, err)
		}
		if got := e.Status().LastError; !strings.Contains(got, "which the bundle does not have") {
			t.Errorf("reason %q", got)
		}
		if !contains(s.dbTables(t), "orders") {
			t.Error("the database lost orders: the assignment alone took migrations down")
		}
		if s.pid() != pid {
			t.Errorf("the app was restarted: pid %s, was %s", s.pid(), pid)
		}
	})
}
