package bundle

import (
	"archive/tar"
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/klauspost/pgzip"
)

const (
	// packLevel is the gzip level Pack always uses: changing it changes
	// the bytes of every bundle.
	packLevel = 6
	// gzipOSUnknown is the OS byte of the gzip header (RFC 1952 "unknown").
	gzipOSUnknown = 255
	// packBlockSize is the size of the independently compressed blocks
	// of the gzip stream (each with the previous block's last 32 KiB as
	// its dictionary). The output depends on it, never on how many
	// blocks are compressed at once: changing it changes the bytes of
	// every bundle.
	packBlockSize = 1 << 20
)

// packBlocks is how many blocks Pack compresses at once (one per core, at
// least two so that reading the files overlaps compressing them). It does
// not change the bytes; tests vary it to show that.
var packBlocks = max(2, runtime.GOMAXPROCS(0))

// packTime returns the modification time of every entry Pack writes.
func packTime() time.Time { return time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC) }

// packEntry is one entry of the directory being packed.
type packEntry struct {
	node *node
	fi   fs.FileInfo // from Lstat
	data []byte      // bundle.toml: the content that was checked
}

// Pack writes the bundle directory dir to w as a deterministic .tar.gz: the
// same tree gives the same bytes, whatever its file times, owners,
// permission bits beyond the executable bits, or the umask.
//
// Entries are sorted by their slash path, directories included; each has
// the time 2000-01-01T00:00:00Z, uid and gid 0, empty user and group
// names, and mode 0755 (directories, files with any executable bit, and
// every hook), 0644 (other files) or 0777 (symlinks), in the PAX tar
// format. The gzip header holds no name and no time, and the OS byte 255;
// the compression level is fixed. The gzip stream is one member, compressed
// in parallel in 1 MiB blocks (klauspost/pgzip, each block ending with a
// sync flush), which any gunzip reads. The bytes are stable for a given
// version of klauspost/compress and pgzip (go.mod pins them) and do not
// depend on the number of cores.
//
// Before writing anything Pack checks the whole tree as [Scan] would and
// refuses, naming the path: a missing files/ directory, an unknown
// top-level entry, a socket, device or FIFO, a symlink that is absolute or
// leaves files/, an invalid bundle.toml, a badly named migration or hook,
// and a tree over [DefaultLimits]. Symlinks are kept as symlinks; hard
// links are written as separate regular files.
func Pack(ctx context.Context, dir string, w io.Writer) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("pack bundle: %w", err)
	}
	defer root.Close()
	list, err := collect(ctx, root)
	if err != nil {
		return fmt.Errorf("pack %s: %w", dir, err)
	}
	if err := writeBundle(ctx, root, list, w); err != nil {
		return fmt.Errorf("pack %s: %w", dir, err)
	}
	return nil
}

// CheckDir checks the bundle directory dir as Pack would, without packing
// it: what Pack would refuse, CheckDir refuses with the same error.
func CheckDir(ctx context.Context, dir string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	_, err = collect(ctx, root)
	return err
}

// collect walks root and checks the tree as Scan would.
func collect(ctx context.Context, root *os.Root) ([]*packEntry, error) {
	var list []*packEntry
	var walk func(dir string) error
	walk = func(dir string) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		names, err := readDirNames(root, dir)
		if err != nil {
			return err
		}
		slices.Sort(names)
		var subdirs []string
		// Check every entry of dir before walking into any: a wrong
		// directory fails on its first unknown top-level entry.
		for _, name := range names {
			p := name
			if dir != "." {
				p = dir + "/" + name
			}
			e, err := lstatEntry(root, p)
			if err != nil {
				return err
			}
			list = append(list, e)
			if e.node.kind == kindDir {
				subdirs = append(subdirs, p)
			}
		}
		for _, p := range subdirs {
			if err := walk(p); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk("."); err != nil {
		return nil, err
	}
	slices.SortFunc(list, func(a, b *packEntry) int { return strings.Compare(a.node.path, b.node.path) })

	lim := DefaultLimits()
	if len(list) > lim.MaxEntries {
		return nil, newErr(fmt.Sprintf("%d entries, over the limit of %d", len(list), lim.MaxEntries), ErrTooLarge)
	}
	t := newTree()
	var total int64
	for _, e := range list {
		if e.node.size > lim.MaxEntrySize {
			return nil, entryErr(e.node.path, ErrTooLarge, "%d bytes, over the limit of %d bytes per entry", e.node.size, lim.MaxEntrySize)
		}
		if total += e.node.size; total > lim.MaxTotalSize {
			return nil, entryErr(e.node.path, ErrTooLarge, "bundle content over the limit of %d bytes in total", lim.MaxTotalSize)
		}
		if err := t.add(e.node); err != nil {
			return nil, err
		}
		if e.node.path == ManifestName {
			if err := checkManifestFile(root, e); err != nil {
				return nil, err
			}
		}
	}
	if err := t.finish(&Info{}); err != nil {
		return nil, err
	}
	return list, nil
}

func readDirNames(root *os.Root, dir string) ([]string, error) {
	f, err := root.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}

// lstatEntry describes the file at p, refusing what a bundle cannot hold.
func lstatEntry(root *os.Root, p string) (*packEntry, error) {
	fi, err := root.Lstat(p)
	if err != nil {
		return nil, err
	}
	var k kind
	switch mode := fi.Mode(); {
	case mode.IsDir():
		k = kindDir
	case mode.IsRegular():
		k = kindFile
	case mode&fs.ModeSymlink != 0:
		k = kindSymlink
	default:
		return nil, entryErr(p, ErrUnsupportedType, "a %s cannot go into a bundle (only directories, regular files and symlinks)", typeName(mode))
	}
	if _, err := cleanEntryName(p); err != nil {
		return nil, err
	}
	// Fail fast on the wrong directory, before walking all of it.
	if err := checkLayout(p, k); err != nil {
		return nil, err
	}
	n := &node{path: p, kind: k, mode: normMode(p, k, fi.Mode().Perm())}
	switch k {
	case kindFile:
		n.size = fi.Size()
	case kindSymlink:
		target, err := root.Readlink(p)
		if err != nil {
			return nil, err
		}
		n.target = filepath.ToSlash(target)
	}
	return &packEntry{node: n, fi: fi}, nil
}

func typeName(mode fs.FileMode) string {
	switch {
	case mode&fs.ModeSocket != 0:
		return "socket"
	case mode&fs.ModeNamedPipe != 0:
		return "FIFO"
	case mode&fs.ModeCharDevice != 0:
		return "character device"
	case mode&fs.ModeDevice != 0:
		return "device"
	}
	return "special file"
}

// checkManifestFile reads and checks bundle.toml, keeping the content
// checked for writeBundle.
func checkManifestFile(root *os.Root, e *packEntry) error {
	if e.node.size > MaxManifestSize {
		return entryErr(ManifestName, ErrBadManifest, "larger than %d KiB", MaxManifestSize>>10)
	}
	data, err := root.ReadFile(ManifestName)
	if err != nil {
		return err
	}
	if _, err := ParseManifest(data); err != nil {
		return err
	}
	e.data = data
	e.node.size = int64(len(data))
	return nil
}

// NewPackGzip returns the gzip writer Pack compresses a bundle's tar
// with: the same tar gives the same bytes through it (package delta
// rebuilds bundles with it, and they must hash as the signed ones).
// Close it to flush the stream and stop its goroutines.
func NewPackGzip(w io.Writer) (*pgzip.Writer, error) {
	zw, err := pgzip.NewWriterLevel(w, packLevel)
	if err != nil {
		return nil, err
	}
	if err := zw.SetConcurrency(packBlockSize, packBlocks); err != nil {
		return nil, err
	}
	// pgzip writes a zero ModTime as a negative Unix time: say 0 (none).
	zw.Header = pgzip.Header{OS: gzipOSUnknown, ModTime: time.Unix(0, 0)}
	return zw, nil
}

// writeBundle writes the checked entries as a .tar.gz.
func writeBundle(ctx context.Context, root *os.Root, list []*packEntry, w io.Writer) error {
	bw := bufio.NewWriterSize(w, 256<<10)
	zw, err := NewPackGzip(bw)
	if err != nil {
		return err
	}
	closed := false
	defer func() {
		if !closed {
			zw.Close() // stops its goroutines; the error is already ours
		}
	}()
	tw := tar.NewWriter(zw)
	buf := make([]byte, 256<<10)
	for _, e := range list {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := e.node
		hdr := &tar.Header{
			Name:    n.path,
			Mode:    int64(n.mode.Perm()),
			ModTime: packTime(),
			Format:  tar.FormatPAX,
		}
		switch n.kind {
		case kindDir:
			hdr.Typeflag = tar.TypeDir
			hdr.Name += "/"
		case kindFile:
			hdr.Typeflag = tar.TypeReg
			hdr.Size = n.size
		case kindSymlink:
			hdr.Typeflag = tar.TypeSymlink
			hdr.Linkname = n.target
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("write %s: %w", n.path, err)
		}
		switch {
		case e.data != nil:
			if _, err := tw.Write(e.data); err != nil {
				return fmt.Errorf("write %s: %w", n.path, err)
			}
		case n.kind == kindFile:
			if err := copyFile(ctx, root, e, tw, buf); err != nil {
				return err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	closed = true
	if err := zw.Close(); err != nil {
		return err
	}
	return bw.Flush()
}

// copyFile copies the file of e into tw, checking that it is the file that
// was checked and that it did not change size meanwhile.
func copyFile(ctx context.Context, root *os.Root, e *packEntry, tw io.Writer, buf []byte) error {
	p := e.node.path
	f, err := root.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() || !os.SameFile(fi, e.fi) {
		return fmt.Errorf("%s: replaced while packing; pack again", p)
	}
	left := e.node.size
	for left > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		chunk := buf[:min(int64(len(buf)), left)]
		nr, err := io.ReadFull(f, chunk)
		if nr > 0 {
			if _, werr := tw.Write(chunk[:nr]); werr != nil {
				return fmt.Errorf("write %s: %w", p, werr)
			}
			left -= int64(nr)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("%s: shrank while packing; pack again", p)
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", p, err)
		}
	}
	if nr, _ := f.Read(buf[:1]); nr > 0 {
		return fmt.Errorf("%s: grew while packing; pack again", p)
	}
	return nil
}
