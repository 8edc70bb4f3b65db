package bundle

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
)

// Unpack extracts the bundle (.tar.gz) read from r into dest, which must be
// an empty directory or not exist (its parent directories are created).
// It makes the checks [Scan] makes, and writes only through an [os.Root]
// opened on dest, creating every file, directory and link exclusively, so
// no entry can overwrite another or write outside dest, even through a
// symlink. Modes are normalised: directories and executables 0755, other
// files 0644; hooks are always executable. Times and owners are not
// restored.
//
// It returns the bundle's Info with the SHA-256 of every regular file. On
// any error, including a cancelled ctx, Unpack removes what it extracted
// (and dest, when it created it). Unpack does not fsync; a caller that
// needs the files durable must sync them.
func Unpack(ctx context.Context, r io.Reader, dest string, lim Limits) (info *Info, err error) {
	created, err := prepareDest(dest)
	if err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(dest)
	if err != nil {
		if created {
			_ = os.Remove(dest)
		}
		return nil, fmt.Errorf("unpack bundle: %w", err)
	}
	defer root.Close()
	defer func() {
		if err != nil {
			cleanup(root, dest, created)
		}
	}()
	u := &unpacker{ctx: ctx, root: root, made: map[string]bool{".": true}, buf: make([]byte, 256<<10)}
	info, err = readBundle(ctx, r, lim, u.put)
	if err != nil {
		return nil, fmt.Errorf("unpack bundle to %s: %w", dest, err)
	}
	return info, nil
}

// prepareDest makes sure dest is an empty directory and reports whether
// Unpack created it.
func prepareDest(dest string) (bool, error) {
	fi, err := os.Stat(dest)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dest, 0o755); err != nil {
			return false, fmt.Errorf("unpack bundle: create destination: %w", err)
		}
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("unpack bundle: %w", err)
	}
	if !fi.IsDir() {
		return false, fmt.Errorf("unpack bundle: destination %s is not a directory", dest)
	}
	f, err := os.Open(dest)
	if err != nil {
		return false, fmt.Errorf("unpack bundle: %w", err)
	}
	defer f.Close()
	if _, err := f.Readdirnames(1); err != io.EOF {
		if err != nil {
			return false, fmt.Errorf("unpack bundle: read destination: %w", err)
		}
		return false, newErr(fmt.Sprintf("unpack bundle: destination %s is not empty; give an empty or new directory", dest), ErrDestNotEmpty)
	}
	return false, nil
}

// cleanup removes what a failed Unpack wrote.
func cleanup(root *os.Root, dest string, created bool) {
	if created {
		_ = root.Close()
		_ = os.RemoveAll(dest)
		return
	}
	d, err := root.Open(".")
	if err != nil {
		return
	}
	names, _ := d.Readdirnames(-1)
	_ = d.Close()
	for _, name := range names {
		_ = root.RemoveAll(name)
	}
}

// unpacker writes checked entries under root.
type unpacker struct {
	ctx  context.Context
	root *os.Root
	made map[string]bool // directories created
	buf  []byte
}

func (u *unpacker) put(n *node, content io.Reader) (string, error) {
	if n.kind == kindDir {
		return "", u.mkdirAll(n.path)
	}
	if err := u.mkdirAll(path.Dir(n.path)); err != nil {
		return "", err
	}
	switch n.kind {
	case kindFile:
		return u.writeFile(n, content)
	case kindSymlink:
		if err := u.root.Symlink(n.target, n.path); err != nil {
			return "", &EntryError{Entry: n.path, Reason: "create symlink: " + err.Error(), Err: err}
		}
	case kindHardlink:
		if err := u.root.Link(n.target, n.path); err != nil {
			return "", &EntryError{Entry: n.path, Reason: "create hard link: " + err.Error(), Err: err}
		}
	}
	return "", nil
}

// mkdirAll creates dir and its missing parents with mode 0755, whatever
// the umask.
func (u *unpacker) mkdirAll(dir string) error {
	if u.made[dir] {
		return nil
	}
	if err := u.mkdirAll(path.Dir(dir)); err != nil {
		return err
	}
	if err := u.root.Mkdir(dir, 0o755); err != nil {
		return &EntryError{Entry: dir, Reason: "create directory: " + err.Error(), Err: err}
	}
	if err := u.root.Chmod(dir, 0o755); err != nil {
		return &EntryError{Entry: dir, Reason: "set mode: " + err.Error(), Err: err}
	}
	u.made[dir] = true
	return nil
}

func (u *unpacker) writeFile(n *node, content io.Reader) (string, error) {
	perm := n.mode.Perm()
	f, err := u.root.OpenFile(n.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return "", &EntryError{Entry: n.path, Reason: "create file: " + err.Error(), Err: err}
	}
	h := sha256.New()
	written, err := u.copy(n.path, f, h, content)
	if err == nil && written != n.size {
		err = io.ErrUnexpectedEOF
	}
	if err == nil {
		// OpenFile's mode is subject to the umask; set it on the open file.
		if cerr := f.Chmod(perm); cerr != nil {
			err = &EntryError{Entry: n.path, Reason: "set mode: " + cerr.Error(), Err: cerr}
		}
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = &EntryError{Entry: n.path, Reason: "write: " + cerr.Error(), Err: cerr}
	}
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// copy copies r to f and h, checking ctx between chunks. Errors reading r
// are returned as they are (the caller tells a truncated stream from a
// failing reader); errors writing f name the entry.
func (u *unpacker) copy(entry string, f *os.File, h io.Writer, r io.Reader) (int64, error) {
	var written int64
	for {
		if err := u.ctx.Err(); err != nil {
			return written, err
		}
		nr, rerr := r.Read(u.buf)
		if nr > 0 {
			h.Write(u.buf[:nr])
			if _, err := f.Write(u.buf[:nr]); err != nil {
				return written, &EntryError{Entry: entry, Reason: "write: " + err.Error(), Err: err}
			}
			written += int64(nr)
		}
		if rerr == io.EOF {
			return written, nil
		}
		if rerr != nil {
			return written, rerr
		}
	}
}
