package daemon

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/dropless/dropless/pkg/filelock"
)

// LockFile in the data directory is held, locked, by the one process that
// uses the directory; it holds that process's pid.
const LockFile = "updateserver.lock"

// dirLock is a held lock on a data directory.
type dirLock struct{ f *os.File }

// lockDataDir takes the data directory's lock, for the life of the
// process (a crash releases it), and writes this process's pid into it.
func lockDataDir(dir string) (*dirLock, error) {
	path := filepath.Join(dir, LockFile)
	f, err := filelock.Lock(path)
	if errors.Is(err, filelock.ErrLocked) {
		who := "another updateserver"
		if b, err := os.ReadFile(path); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
				who = fmt.Sprintf("another updateserver (pid %d)", pid)
			}
		}
		return nil, fmt.Errorf("data dir %s is in use by %s: stop it first, or use another --data", dir, who)
	}
	if err != nil {
		return nil, fmt.Errorf("lock data dir: %w", err)
	}
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &dirLock{f: f}, nil
}

// release unlocks (closing the file releases the lock).
func (l *dirLock) release() {
	if l != nil && l.f != nil {
		l.f.Close()
		l.f = nil
	}
}
