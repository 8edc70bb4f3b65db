package cli

import (
	"archive/tar"
	"compress/gzip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestSupportBundleCommand: the real binary writes the bundle (mode
// 0600) with the server unreachable and the agent never run, tells what
// it could not collect, and refuses a missing --out as a usage error.
func TestSupportBundleCommand(t *testing.T) {
	dir := t.TempDir()
	cfg := writeStatusConfig(t, dir)
	out := filepath.Join(dir, "support.tar.gz")
	r := runAgent(t, nil, "support-bundle", "--config", cfg, "--out", out)
	if r.code != 0 || !strings.Contains(r.stdout, "wrote "+out) {
		t.Fatalf("support-bundle: exit %d, stdout %q", r.code, r.stdout)
	}
	fi, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	var names []string
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		names = append(names, h.Name)
	}
	joined := strings.Join(names, " ")
	for _, want := range []string{"/config.toml", "/status.json", "/history.txt", "/drift.txt", "/facts.json", "/README.txt"} {
		if !strings.Contains(joined, want) {
			t.Errorf("no %s in %v", want, names)
		}
	}
	if r := runAgent(t, nil, "support-bundle", "--config", cfg); r.code != 2 || !strings.Contains(r.stderr, "--out FILE is required") {
		t.Errorf("without --out: exit %d, %q", r.code, r.stderr)
	}
}
