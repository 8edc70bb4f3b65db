package runner

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dropless/dropless/agent/internal/config"
)

// TestBadCAFile: a ca_file that does not load stops the agent at start
// with an error that names the key and the file.
func TestBadCAFile(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.txt")
	os.WriteFile(notPEM, []byte("not a certificate\n"), 0o644)
	missing := filepath.Join(dir, "missing.pem")
	for _, tt := range []struct{ file, want string }{
		{missing, "ca_file: open " + missing + ": no such file or directory"},
		{notPEM, "ca_file: " + notPEM + " holds no PEM certificate"},
	} {
		cfg, err := configFor(t, tt.file)
		if err != nil {
			t.Fatal(err)
		}
		// The deadline only bounds an agent that would start anyway.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = New(cfg, slog.New(slog.DiscardHandler)).Run(ctx)
		cancel()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Run with ca_file %s: %v, want %q", tt.file, err, tt.want)
		}
	}
}

// configFor is a valid agent config with caFile as its ca_file.
func configFor(t *testing.T, caFile string) (*config.Config, error) {
	dir := t.TempDir()
	return config.Parse([]byte(fmt.Sprintf(`server = "https://127.0.0.1:1"
site = "s"
client = "c"
product = "p"
enroll_token = "x"
root_sha256 = "%064d"
install_dir = %q
data_dir = %q
ca_file = %q
[app]
start = ["true"]
stop = ["true"]
health_cmd = ["true"]
`, 0, filepath.Join(dir, "install"), filepath.Join(dir, "data"), caFile)))
}
