//go:build !unix && !windows

package proc

import (
	"os"
	"os/exec"
)

// SetGroup does nothing on this OS.
func SetGroup(cmd *exec.Cmd) {}

// KillGroup kills p only.
func KillGroup(p *os.Process) error {
	if p == nil {
		return nil
	}
	return p.Kill()
}
