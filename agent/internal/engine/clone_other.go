//go:build !linux

package engine

import "os"

// cloneFile reports false: reflinks are used on Linux only.
func cloneFile(out, in *os.File) bool { return false }

// syncFS fsyncs every file and directory under p (or p itself).
func syncFS(p string) error { return syncTree(p) }
