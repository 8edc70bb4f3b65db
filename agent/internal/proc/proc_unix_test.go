//go:build unix

package proc

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A child that does not start is a *StartError.
func TestRunNotStarted(t *testing.T) {
	cmd := exec.CommandContext(context.Background(), filepath.Join(t.TempDir(), "missing"))
	err := Run(cmd, &Lines{Log: slog.New(slog.DiscardHandler), Max: 64}, time.Second, "left behind")
	var se *StartError
	if !errors.As(err, &se) {
		t.Fatalf("Run of a missing file = %v, want a *StartError", err)
	}
}

// A child killed by its context takes the processes it started with it:
// nothing of its process group survives.
func TestRunKillsGroup(t *testing.T) {
	pidfile := filepath.Join(t.TempDir(), "grandchild.pid")
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "sh", "-c", `sleep 300 & echo $! >"$0"; echo started; wait`, pidfile)
	cmd.WaitDelay = 5 * time.Second
	out := &Lines{Log: slog.New(slog.DiscardHandler), Max: 64}
	done := make(chan error, 1)
	go func() { done <- Run(cmd, out, time.Second, "left behind") }()
	var pid int
	for deadline := time.Now().Add(10 * time.Second); ; {
		b, _ := os.ReadFile(pidfile)
		if p, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && p > 0 && out.LastLine() == "started" {
			pid = p
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the child did not start its own child and say so (last line %q)", out.LastLine())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	var ee *exec.ExitError
	if err := <-done; !errors.As(err, &ee) {
		t.Fatalf("Run after cancel = %v, want the killed child's exit", err)
	}
	for deadline := time.Now().Add(10 * time.Second); syscall.Kill(pid, 0) == nil; {
		if time.Now().After(deadline) {
			t.Fatalf("process %d, started by the killed child, still runs", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
