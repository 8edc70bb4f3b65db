//go:build unix

package migrate

import "os"

// holdOld opens the file at path, about to be replaced by a rename, so
// that the rename does not free it: freeing a 1 GiB file (its page cache
// and its blocks, in the rename and the directory's fsync) took 0.7 to
// 1.5 s here, on the rollback's path. The returned func closes it in the
// background, which frees it there. Closing it drops this process's
// POSIX locks on the old file only: the restore has closed its
// connections to it, and later ones open the new file.
func holdOld(path string) (release func()) {
	f, err := os.Open(path)
	if err != nil {
		return func() {}
	}
	return func() { go f.Close() }
}
