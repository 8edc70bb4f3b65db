package atomicfile

import (
	"os"

	"golang.org/x/sys/unix"
)

// startWriteback starts writing the dirty pages of [off, off+n) to disk,
// without waiting for them.
func startWriteback(f *os.File, off, n int64) {
	syncRange(f, off, n, unix.SYNC_FILE_RANGE_WRITE)
}

// waitWriteback waits until the pages of [off, off+n) are on disk, writing
// those that are still dirty.
func waitWriteback(f *os.File, off, n int64) {
	syncRange(f, off, n, unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE|unix.SYNC_FILE_RANGE_WAIT_AFTER)
}

func syncRange(f *os.File, off, n int64, flags int) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) { unix.SyncFileRange(int(fd), off, n, flags) })
}
