//go:build windows

package appctl

import (
	"os"
	"os/exec"
	"strconv"
	"syscall"
)

// setProcessGroup starts the command in a new process group, detached from
// the agent's console signals.
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{CreationFlags: syscall.CREATE_NEW_PROCESS_GROUP}
}

// killProcessGroup kills the command and every process it started:
// Windows has no process-group kill, so taskkill /T walks the tree.
func killProcessGroup(p *os.Process) error {
	if p == nil {
		return nil
	}
	if err := exec.Command("taskkill", "/T", "/F", "/PID", strconv.Itoa(p.Pid)).Run(); err != nil {
		return p.Kill()
	}
	return nil
}
