package selfupdate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"time"
)

// Trial is the old agent's watch over the new binary: it starts r.Staged
// (the new binary) with args and TrialEnv set to the job, and waits until
// healthy reports the job succeeded (the child journaled it after its
// check-in), the child exits, or timeout passes. The child dies with the
// parent (on Linux), so a kill -9 of the old agent ends the trial too.
//
// It returns nil once the child proved healthy, after stopping it (the
// caller then swaps the new binary in and starts it in its own place); otherwise the
// reason the trial failed (the child is killed by then). ctx ending (the
// service is stopped) kills the child and returns ctx's error.
func Trial(ctx context.Context, r Record, args []string, timeout time.Duration, healthy func() (bool, error), log *slog.Logger) error {
	cmd := exec.Command(r.Staged, args...)
	cmd.Env = append(withoutTrial(os.Environ()), TrialEnv+"="+r.Job)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	setChildAttrs(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("the new agent %s did not start: %v", r.To, err)
	}
	log.Info("self-update: the new agent runs on trial", "pid", cmd.Process.Pid, "version", r.To, "trial", timeout)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	kill := func() {
		cmd.Process.Kill()
		<-exited
	}
	for {
		select {
		case <-ctx.Done():
			kill()
			return ctx.Err()
		case err := <-exited:
			// It may have ended the job just before it exited.
			if ok, _ := healthy(); ok {
				return nil
			}
			return fmt.Errorf("the new agent %s exited before it was healthy (%v)", r.To, exitText(err))
		case <-deadline.C:
			if ok, _ := healthy(); ok {
				return stop(cmd, exited)
			}
			kill()
			return fmt.Errorf("the new agent %s did not check in healthy within %s", r.To, timeout)
		case <-tick.C:
			ok, err := healthy()
			if err != nil {
				log.Warn("self-update: reading the trial's result", "err", err)
			}
			if ok {
				return stop(cmd, exited)
			}
		}
	}
}

// stop ends a child that proved healthy: SIGTERM (it shuts down cleanly
// and releases the data dir), SIGKILL after 30s.
func stop(cmd *exec.Cmd, exited chan error) error {
	terminate(cmd.Process)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-exited
	}
	return nil
}

func exitText(err error) string {
	if err == nil {
		return "exit status 0"
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ProcessState.String()
	}
	return err.Error()
}

func withoutTrial(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, TrialEnv+"=") {
			out = append(out, kv)
		}
	}
	return out
}

// Restart replaces this process with exe run with args (TrialEnv
// removed): the service manager keeps seeing the same process. Where the
// OS cannot (Windows), it returns ErrCannotExec and the caller exits so
// that the service manager starts the agent again.
func Restart(exe string, args []string) error {
	return execSelf(exe, args, withoutTrial(os.Environ()))
}

// ErrCannotExec: this OS cannot replace a running process's program.
var ErrCannotExec = errors.New("this OS cannot re-execute a process in place")
