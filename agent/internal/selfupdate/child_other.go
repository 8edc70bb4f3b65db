//go:build unix && !linux

package selfupdate

import "os/exec"

func setChildAttrs(*exec.Cmd) {}
