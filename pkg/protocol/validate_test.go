package protocol

import (
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCleanText(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		max       int
		multiline bool
		want      string
	}{
		{"plain", "downloading acme-erp/acme-erp-1.1.0.tar.gz", 2048, true, "downloading acme-erp/acme-erp-1.1.0.tar.gz"},
		{"newlines kept in messages", "hook failed:\n\tline 2", 2048, true, "hook failed:\n\tline 2"},
		{"newlines escaped in one-line text", "a\nb", 100, false, `a\x0ab`},
		{"terminal escape", "\x1b[2Jgone", 100, true, `\x1b[2Jgone`},
		{"bidi override", "evil\u202etxt.exe", 100, true, `evil\u202etxt.exe`},
		{"invalid UTF-8", "a\xffb", 100, true, "a\uFFFDb"},
		{"html is text", "<img src=x onerror=alert(1)>", 100, true, "<img src=x onerror=alert(1)>"},
		{"cut with marker", strings.Repeat("x", 12288), 2048, true, strings.Repeat("x", 2048-len("… (truncated, 12288 bytes)")) + "… (truncated, 12288 bytes)"},
		{"cut inside a rune", strings.Repeat("é", 100), 50, true, strings.Repeat("é", 12) + "… (truncated, 200 bytes)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := CleanText(tt.in, tt.max, tt.multiline)
			if got != tt.want {
				t.Errorf("CleanText = %q, want %q", got, tt.want)
			}
			if len(got) > tt.max || !utf8.ValidString(got) {
				t.Errorf("%d bytes, valid UTF-8 %t", len(got), utf8.ValidString(got))
			}
		})
	}
}

func TestCheckinValidate(t *testing.T) {
	tests := []struct {
		name    string
		in      CheckinRequest
		wantErr string
	}{
		{"real agent", CheckinRequest{InstalledVersion: "1.2.0", AgentVersion: "v0.3.1-4-gabc+dirty", OS: "linux", Arch: "amd64", Hostname: "erp-01", State: StateIdle,
			Job: &JobStatus{ID: "job-0123456789abcdef", From: "1.1.0", To: "1.2.0", State: StateCommitted, Result: ResultSucceeded}, Drift: []string{"modified: bin/app.dll"}}, ""},
		{"fresh site", CheckinRequest{}, ""},
		{"unknown result", CheckinRequest{Job: &JobStatus{ID: "j", Result: "exploded"}}, "job.result"},
		{"unknown state", CheckinRequest{State: "upgrading"}, "state"},
		{"version with space", CheckinRequest{InstalledVersion: "1.0 beta"}, "installed_version"},
		{"job from", CheckinRequest{Job: &JobStatus{ID: "j", From: "<b>"}}, "job.from"},
		{"tab in os", CheckinRequest{OS: "lin\tux"}, "os"},
		{"long arch", CheckinRequest{Arch: strings.Repeat("a", 33)}, "arch"},
		{"drift line", CheckinRequest{Drift: []string{"ok", strings.Repeat("d", MaxDriftLine+1)}}, "drift[1]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.in.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr+":") {
				t.Fatalf("err = %v, want one naming %s", err, tt.wantErr)
			}
		})
	}
}

func TestCleanDrift(t *testing.T) {
	var in []string
	for range 250 {
		in = append(in, "added: x.dll")
	}
	got := CleanDrift(in)
	if len(got) != KeepDriftLines || got[KeepDriftLines-1] != "... and 151 more changes" {
		t.Fatalf("%d lines, last %q", len(got), got[len(got)-1])
	}
	if got := CleanDrift(in[:KeepDriftLines]); len(got) != KeepDriftLines || got[KeepDriftLines-1] != "added: x.dll" {
		t.Fatalf("exactly %d lines changed: %q", KeepDriftLines, got[len(got)-1])
	}
}

func TestValidName(t *testing.T) {
	tests := []struct {
		in   string
		want string // "" for valid
	}{
		{"acme-erp", ""},
		{"site.01_b", ""},
		{"0", ""},
		{strings.Repeat("a", 64), ""},
		{strings.Repeat("a", 65), "is not valid"},
		{"", "is not valid"},
		{"Acme", "is not valid"},
		{"-acme", "is not valid"},
		{"acme/erp", "is not valid"},
		{"acme\n", "is not valid"},
	}
	for _, tt := range tests {
		err := ValidName("site", tt.in)
		if tt.want == "" && err != nil {
			t.Errorf("ValidName(%q) = %v, want nil", tt.in, err)
		}
		if tt.want != "" && (err == nil || !strings.Contains(err.Error(), `site "`) || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("ValidName(%q) = %v, want an error naming the site that contains %q", tt.in, err, tt.want)
		}
	}
}

func TestBlockingDrift(t *testing.T) {
	in := []string{"modified: bin/app.dll", DriftReportedOnly + "added table audit_log", "schema: added column customers.hotfix_flag"}
	got := BlockingDrift(in)
	want := []string{"modified: bin/app.dll", "schema: added column customers.hotfix_flag"}
	if !slices.Equal(got, want) {
		t.Errorf("BlockingDrift = %q, want %q", got, want)
	}
	if got := BlockingDrift(in[1:2]); len(got) != 0 {
		t.Errorf("BlockingDrift of reported-only lines = %q, want none", got)
	}
}
