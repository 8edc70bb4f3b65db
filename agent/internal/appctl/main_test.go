package appctl

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/dropless/dropless/pkg/testutil"
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

// testLogger logs through t.Log; records written after the test ended
// (a background reader may still hold a command's output) are dropped.
func testLogger(t *testing.T) *slog.Logger { return testutil.Logger(t) }
