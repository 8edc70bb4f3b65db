package engine

import (
	"os"

	"golang.org/x/sys/unix"
)

// cloneFile makes out share in's extents (FICLONE: a reflink, copy on
// write) where the file system offers it (btrfs, XFS with reflink), and
// reports whether it did.
func cloneFile(out, in *os.File) bool {
	return unix.IoctlFileClone(int(out.Fd()), int(in.Fd())) == nil
}

// syncFS makes everything written to the file system holding p durable:
// one syncfs(2), where a tree of thousands of files would take as many
// fsyncs.
func syncFS(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}
