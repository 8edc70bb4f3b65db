//go:build !linux

package engine

import "os"

// cloneFile reports false: reflinks are used on Linux only.
func cloneFile(out, in *os.File) bool { return false }
