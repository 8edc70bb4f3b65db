//go:build !linux

package atomicfile

import "os"

// startWriteback is a no-op where sync_file_range does not exist: the
// final fsync does the work.
func startWriteback(*os.File, int64, int64) {}

func waitWriteback(*os.File, int64, int64) {}
