package appctl

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// testApp is the testdata/testapp binary, built once by TestMain.
var testApp string

func TestMain(m *testing.M) {
	os.Exit(func() int {
		dir, err := os.MkdirTemp("", "appctl-test")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		testApp = filepath.Join(dir, "testapp")
		if runtime.GOOS == "windows" {
			testApp += ".exe"
		}
		out, err := exec.Command("go", "build", "-o", testApp, "./testdata/testapp").CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "build testapp: %v\n%s", err, out)
			return 1
		}
		return m.Run()
	}())
}

// testLogger logs through t.Log, and drops records written after the test
// ended (a background reader may still hold a command's output).
func testLogger(t *testing.T) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct {
	t    *testing.T
	mu   sync.Mutex
	done bool
	all  strings.Builder
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	w.all.Write(p)
	return len(p), nil
}
