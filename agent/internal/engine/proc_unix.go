//go:build unix

package engine

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
)

// setProcessGroup puts a hook in a process group of its own, so that
// killProcessGroup reaches everything it started.
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// killProcessGroup kills the hook's whole process group.
func killProcessGroup(p *os.Process) error {
	if p == nil {
		return nil
	}
	err := syscall.Kill(-p.Pid, syscall.SIGKILL)
	if errors.Is(err, syscall.ESRCH) {
		return os.ErrProcessDone
	}
	if err != nil {
		return p.Kill()
	}
	return nil
}
