// Package atomicfile writes files so that a reader, or a machine that loses
// power, sees either the old content or the new one, never a mix.
//
// The sequence is the classic one: write a temporary file in the same
// directory, fsync it, rename it over the target, fsync the directory so the
// rename itself is durable.
package atomicfile

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
)

// WriteFile atomically replaces filename with data, with permissions perm.
func WriteFile(filename string, data []byte, perm os.FileMode) error {
	return Write(filename, perm, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// Write atomically replaces filename with what fill writes, with
// permissions perm. If fill fails, filename is left untouched and the
// temporary file is removed.
func Write(filename string, perm os.FileMode, fill func(io.Writer) error) (err error) {
	dir := filepath.Dir(filename)
	f, err := os.CreateTemp(dir, "."+filepath.Base(filename)+".tmp*")
	if err != nil {
		return fmt.Errorf("atomic write %s: %w", filename, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err = f.Chmod(perm); err != nil && runtime.GOOS != "windows" {
		return fmt.Errorf("atomic write %s: %w", filename, err)
	}
	if err = fill(f); err != nil {
		return fmt.Errorf("atomic write %s: %w", filename, err)
	}
	// Sync the data before the rename: otherwise a power loss can leave the
	// new name pointing at an empty or partial file.
	if err = f.Sync(); err != nil {
		return fmt.Errorf("atomic write %s: sync: %w", filename, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("atomic write %s: %w", filename, err)
	}
	if err = os.Rename(tmp, filename); err != nil {
		return fmt.Errorf("atomic write %s: %w", filename, err)
	}
	// Sync the directory so the rename survives a power loss.
	return SyncDir(dir)
}

// Rename renames oldpath to newpath and syncs the destination directory, so
// the move is durable once Rename returns.
func Rename(oldpath, newpath string) error {
	if err := os.Rename(oldpath, newpath); err != nil {
		return err
	}
	return SyncDir(filepath.Dir(newpath))
}

// SyncFile fsyncs a file's content, for a file written by something that
// does not sync (an unpacked bundle, a cache written by another library).
// On Windows the file is opened for writing: FlushFileBuffers needs
// write access.
func SyncFile(name string) error {
	flag := os.O_RDONLY
	if runtime.GOOS == "windows" {
		flag = os.O_RDWR
	}
	f, err := os.OpenFile(name, flag, 0)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// SyncDir fsyncs a directory, making renames and creations in it durable.
// It is a no-op on Windows, where directories cannot be opened for sync and
// NTFS journals metadata itself.
func SyncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}
