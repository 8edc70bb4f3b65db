// Package proc runs the agent's child processes: the application's start
// and stop commands (appctl) and a bundle's hooks (engine). Each child
// runs in a process group of its own (on Windows, a new process group,
// killed as a process tree), so that a timeout kills it and everything it
// started; its combined output goes to the agent's log one record per
// line, and the last lines are kept for the error that names it.
package proc

import (
	"fmt"
	"os"
	"os/exec"
	"time"
)

// StartError is returned by Run when the child could not be started (no
// such file, not executable, ...).
type StartError struct{ Err error }

func (e *StartError) Error() string { return e.Err.Error() }
func (e *StartError) Unwrap() error { return e.Err }

// Run runs cmd, which exec.CommandContext made: in a process group of its
// own, killed whole when cmd's context ends (cmd.WaitDelay, set by the
// caller, bounds the wait after the kill); stdout and stderr into one
// pipe that out reads. It returns when the child has exited and its output
// ended, or drain after the exit when a process the child left in the
// background still holds the output: Run then logs leftBehind as a
// warning and out keeps logging what that process writes.
//
// The pipe is ours, not one exec.Cmd owns: Wait returns when the child
// exits even if a background process holds the pipe, and that process
// gets no SIGPIPE because out keeps reading.
//
// The error is a *StartError when the child did not start, otherwise
// cmd.Wait's (an *exec.ExitError, exec.ErrWaitDelay, ...).
func Run(cmd *exec.Cmd, out *Lines, drain time.Duration, leftBehind string) error {
	SetGroup(cmd)
	cmd.Cancel = func() error { return KillGroup(cmd.Process) }
	pr, pw, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("output pipe: %w", err)
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		pw.Close()
		pr.Close()
		return &StartError{err}
	}
	pw.Close() // the child holds its own copy
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer pr.Close()
		out.Copy(pr)
	}()
	werr := cmd.Wait()
	select {
	case <-done:
	case <-time.After(drain):
		out.Log.Warn(leftBehind)
	}
	return werr
}
