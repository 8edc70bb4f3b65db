package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dropless/dropless/agent/internal/runner"
)

// TestStatusSaysWhyNotReachable: status shows why the agent cannot reach
// the server and what to do, in text and --json, from what the running
// agent recorded, instead of "not contacted yet".
func TestStatusSaysWhyNotReachable(t *testing.T) {
	at := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		contact  runner.Contact
		wantText []string
		wantJSON map[string]any
	}{
		{
			name: "enroll token refused",
			contact: runner.Contact{At: at, LastError: "enroll: server answered 401: the enroll token has expired: ask support for a new one (updateserver enroll-token create)", LastErrorAt: at,
				Problem: runner.ProblemEnrollTokenRefused, Hint: "the enroll token was refused (expired, used up or revoked): ask support for a new enroll token and put it in enroll_token in the config"},
			wantText: []string{"NOT reachable (enroll token refused, since ", "the enroll token has expired", "what to do: the enroll token was refused (expired, used up or revoked): ask support for a new enroll token and put it in enroll_token"},
			wantJSON: map[string]any{"server_reachable": false, "server_problem": "enroll_token_refused", "server_error_at": "2026-03-01T10:00:00Z"},
		},
		{
			name:     "credential refused",
			contact:  runner.Contact{At: at, LastError: "check in: server answered 401: the agent credential is not valid", LastErrorAt: at, Problem: runner.ProblemCredentialRefused, Hint: "keeps trying"},
			wantText: []string{"NOT reachable (credential refused, since", "what to do: keeps trying"},
			wantJSON: map[string]any{"server_reachable": false, "server_problem": "credential_refused", "hint": "keeps trying"},
		},
		{
			name:     "root mismatch while reachable",
			contact:  runner.Contact{At: at, Reachable: true, LastOK: at, RootError: "the server's root.json has sha256 aa, the config pins bb: fix root_sha256 in the config (the server prints it: updateserver root sha256)"},
			wantText: []string{"reachable (last contact", "root:       the server's root.json has sha256 aa, the config pins bb: fix root_sha256"},
			wantJSON: map[string]any{"server_reachable": true, "root_error": "the server's root.json has sha256 aa, the config pins bb: fix root_sha256 in the config (the server prints it: updateserver root sha256)"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := writeStatusConfig(t, dir)
			b, _ := json.Marshal(tt.contact)
			if err := os.WriteFile(filepath.Join(dir, "data", runner.ContactFile), b, 0o644); err != nil {
				t.Fatal(err)
			}
			r := runAgent(t, nil, "status", "--config", cfg)
			if r.code != 0 {
				t.Fatalf("status: exit %d", r.code)
			}
			for _, w := range tt.wantText {
				if !strings.Contains(r.stdout, w) {
					t.Errorf("status does not say %q", w)
				}
			}
			if strings.Contains(r.stdout, "not contacted yet") {
				t.Errorf("status says not contacted yet")
			}
			r = runAgent(t, nil, "status", "--config", cfg, "--json")
			var got map[string]any
			if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
				t.Fatal(err)
			}
			for k, v := range tt.wantJSON {
				if got[k] != v {
					t.Errorf("--json %s = %v, want %v", k, got[k], v)
				}
			}
		})
	}
}

func writeStatusConfig(t *testing.T, dir string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "agent.toml")
	toml := `server = "http://127.0.0.1:1"
site = "acme-prod"
client = "acme"
product = "acme-erp"
root_sha256 = "` + strings.Repeat("ab", 32) + `"
install_dir = "` + filepath.ToSlash(filepath.Join(dir, "install")) + `"
data_dir = "` + filepath.ToSlash(filepath.Join(dir, "data")) + `"
[app]
start = ["true"]
stop = ["true"]
health_cmd = ["true"]
`
	if err := os.WriteFile(cfg, []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestStatusDefaultConfig: status without --config reads the packaged
// config (CONTRACT.md: --config is optional), and when there is none it
// names the path it looked at and says to give --config.
func TestStatusDefaultConfig(t *testing.T) {
	dir := t.TempDir()
	cfg := writeStatusConfig(t, dir)
	old := defaultConfigPath
	t.Cleanup(func() { defaultConfigPath = old })

	defaultConfigPath = func() string { return cfg }
	var stdout, stderr strings.Builder
	if code := Run(context.Background(), []string{"status"}, IO{Stdout: &stdout, Stderr: &stderr}); code != 0 {
		t.Fatalf("status without --config: exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "site:       acme-prod (client acme, product acme-erp)") {
		t.Errorf("status without --config did not read %s:\n%s", cfg, stdout.String())
	}

	missing := filepath.Join(dir, "etc", "agent.toml")
	defaultConfigPath = func() string { return missing }
	stdout.Reset()
	stderr.Reset()
	code := Run(context.Background(), []string{"status"}, IO{Stdout: &stdout, Stderr: &stderr})
	if code != 1 || !strings.Contains(stderr.String(), "no agent config at "+missing) || !strings.Contains(stderr.String(), "--config FILE") {
		t.Errorf("status with no packaged config: exit %d, %q; want 1 and a message naming %s and --config", code, stderr.String(), missing)
	}
}
