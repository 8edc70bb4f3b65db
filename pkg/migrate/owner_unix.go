//go:build unix

package migrate

import (
	"os"
	"syscall"
)

// copyOwner gives path the owner and group of fi (the file it replaces), so
// that an app running as another user than the agent can still open a
// restored database. Only root may chown; otherwise the file keeps the
// agent's user, which is then also the app's.
func copyOwner(path string, fi os.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || os.Geteuid() != 0 {
		return nil
	}
	return os.Chown(path, int(st.Uid), int(st.Gid))
}
