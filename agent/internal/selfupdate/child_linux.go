package selfupdate

import (
	"os/exec"
	"syscall"
)

// setChildAttrs makes the child die with the old agent: a kill -9 of the
// old agent during the trial must not leave the new one running outside
// the service manager's view.
func setChildAttrs(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
