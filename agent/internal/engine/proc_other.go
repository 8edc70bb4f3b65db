//go:build !unix && !windows

package engine

import (
	"os"
	"os/exec"
)

// setProcessGroup does nothing on this OS.
func setProcessGroup(cmd *exec.Cmd) {}

// killProcessGroup kills the hook only.
func killProcessGroup(p *os.Process) error {
	if p == nil {
		return nil
	}
	return p.Kill()
}
