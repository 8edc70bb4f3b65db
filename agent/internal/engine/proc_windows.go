//go:build windows

package engine

import (
	"os"
	"os/exec"
	"strconv"
	"syscall"
)

// setProcessGroup starts a hook in a new process group, detached from the
// agent's console signals.
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{CreationFlags: syscall.CREATE_NEW_PROCESS_GROUP}
}

// killProcessGroup kills the hook and every process it started: taskkill
// /T walks the process tree.
func killProcessGroup(p *os.Process) error {
	if p == nil {
		return nil
	}
	if err := exec.Command("taskkill", "/T", "/F", "/PID", strconv.Itoa(p.Pid)).Run(); err != nil {
		return p.Kill()
	}
	return nil
}
