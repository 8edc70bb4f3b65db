//go:build unix

package proc

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
)

// SetGroup puts cmd in a process group of its own, so that KillGroup
// reaches everything it started.
func SetGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// KillGroup kills p's whole process group (p is its leader, started after
// SetGroup). A process already gone is os.ErrProcessDone.
func KillGroup(p *os.Process) error {
	if p == nil {
		return nil
	}
	// The group id is the leader's pid (Setpgid with Pgid 0).
	err := syscall.Kill(-p.Pid, syscall.SIGKILL)
	if errors.Is(err, syscall.ESRCH) {
		return os.ErrProcessDone
	}
	if err != nil {
		// Fall back to the leader alone.
		return p.Kill()
	}
	return nil
}
