//go:build unix

package selfupdate

import (
	"os"
	"syscall"
)

func execSelf(exe string, args, env []string) error {
	return syscall.Exec(exe, append([]string{exe}, args...), env)
}

func terminate(p *os.Process) { p.Signal(syscall.SIGTERM) }
