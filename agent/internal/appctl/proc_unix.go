//go:build unix

package appctl

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
)

// setProcessGroup puts the command in a process group of its own, so that
// killProcessGroup reaches everything it started.
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// killProcessGroup kills the command's whole process group.
func killProcessGroup(p *os.Process) error {
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
