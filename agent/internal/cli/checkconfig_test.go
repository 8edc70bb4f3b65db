package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckConfig: check-config accepts a config the agent can run with
// and refuses one with a placeholder, naming the key, so that a package's
// postinst does not start an agent that client IT has not configured.
func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	valid := writeStatusConfig(t, dir)
	placeholder := filepath.Join(dir, "placeholder.toml")
	b, _ := os.ReadFile(valid)
	os.WriteFile(placeholder, []byte(strings.Replace(string(b), `site = "acme-prod"`, `site = ""`, 1)), 0o644)
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{"valid", []string{"--config", valid}, 0, "is valid", ""},
		{"placeholder", []string{"--config", placeholder}, 1, "", "site: missing"},
		{"missing file", []string{"--config", filepath.Join(dir, "nope.toml")}, 1, "", "read config"},
		{"no --config", nil, 2, "", "--config FILE is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runAgent(t, nil, append([]string{"check-config"}, tt.args...)...)
			if r.code != tt.wantCode || !strings.Contains(r.stdout, tt.wantStdout) || !strings.Contains(r.stderr, tt.wantStderr) {
				t.Errorf("check-config %v: exit %d, stdout %q, stderr %q; want exit %d, stdout with %q, stderr with %q",
					tt.args, r.code, r.stdout, r.stderr, tt.wantCode, tt.wantStdout, tt.wantStderr)
			}
		})
	}
}
