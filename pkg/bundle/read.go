package bundle

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/flate"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"

	// klauspost's gzip reader inflates about a quarter faster than the
	// standard library's; its errors are the standard library's values
	// (gzip.ErrChecksum, gzip.ErrHeader, flate.CorruptInputError).
	"github.com/klauspost/compress/gzip"
)

const (
	// readBufSize is the read-ahead under the gzip reader.
	readBufSize = 256 << 10
	// maxTrailer is how much zero padding may follow the end of the tar
	// archive inside the gzip stream (tar pads to its record size).
	maxTrailer = 8 << 20
	// maxNameBytes bounds the total length of entry names and link targets,
	// which the checks keep in memory.
	maxNameBytes = 64 << 20
)

// putFunc stores one checked entry; content holds a regular file's bytes.
// It returns the hex SHA-256 of the content it stored, or "".
type putFunc func(n *node, content io.Reader) (string, error)

// source records the error of the caller's reader, so that a failing
// upload is reported as such and not as a corrupt bundle.
type source struct {
	r   io.Reader
	err error
}

func (s *source) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		s.err = err
	}
	return n, err
}

// readBundle reads a bundle stream to its end, checking every entry, and
// hands each to put (nil put skips the content). It returns the bundle's
// Info when all of it is valid.
func readBundle(ctx context.Context, r io.Reader, lim Limits, put putFunc) (*Info, error) {
	lim = lim.withDefaults()
	src := &source{r: r}
	br := bufio.NewReaderSize(src, readBufSize)
	zr, err := gzip.NewReader(br)
	if err != nil {
		if src.err != nil {
			return nil, fmt.Errorf("read bundle: %w", src.err)
		}
		if err == io.EOF {
			return nil, newErr(ErrNotBundle.Error()+": the input is empty", ErrNotBundle)
		}
		return nil, newErr(ErrNotBundle.Error(), ErrNotBundle, err)
	}
	zr.Multistream(false)
	ms := &multistream{zr: zr, br: br}
	tr := tar.NewReader(ms)
	t := newTree()
	info := &Info{}
	entries, nameBytes := 0, 0
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if errors.Is(err, tar.ErrInsecurePath) && hdr != nil {
			// With GODEBUG=tarinsecurepath=0 archive/tar flags names that
			// our own checks refuse with a clearer error (or accept).
			err = nil
		}
		if err != nil {
			return nil, streamErr(src, err, "")
		}
		entries++
		size := hdr.Size
		switch hdr.Typeflag {
		case tar.TypeDir, tar.TypeSymlink, tar.TypeLink, tar.TypeChar, tar.TypeBlock, tar.TypeFifo, tar.TypeXGlobalHeader:
			size = 0 // no content follows (archive/tar has read a global header's)
		}
		if entries > lim.MaxEntries {
			return nil, entryErr(hdr.Name, ErrTooLarge, "more than %d entries in the bundle", lim.MaxEntries)
		}
		if size > lim.MaxEntrySize {
			return nil, entryErr(hdr.Name, ErrTooLarge, "%d bytes, over the limit of %d bytes per entry", size, lim.MaxEntrySize)
		}
		if nameBytes += len(hdr.Name) + len(hdr.Linkname); nameBytes > maxNameBytes {
			return nil, entryErr(hdr.Name, ErrTooLarge, "entry names over the limit of %d MiB in total", maxNameBytes>>20)
		}
		info.TotalSize += size
		if info.TotalSize > lim.MaxTotalSize {
			return nil, entryErr(hdr.Name, ErrTooLarge, "bundle content over the limit of %d bytes in total", lim.MaxTotalSize)
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader { // e.g. the comment git archive writes
			continue
		}
		n, err := headerNode(hdr)
		if err != nil {
			return nil, err
		}
		if n == nil { // the bundle root, "./"
			continue
		}
		if err := t.add(n); err != nil {
			return nil, err
		}
		var content io.Reader = tr
		if n.path == ManifestName {
			m, data, err := readManifest(src, tr, hdr.Size)
			if err != nil {
				return nil, err
			}
			info.Manifest = m
			content = bytes.NewReader(data)
		}
		if put != nil {
			sha, err := put(n, content)
			if err != nil {
				if cerr := ctx.Err(); cerr != nil {
					return nil, cerr
				}
				return nil, streamErr(src, err, n.path)
			}
			n.sha256 = sha
		}
	}
	if err := drain(src, ms); err != nil {
		return nil, err
	}
	if err := t.finish(info); err != nil {
		return nil, err
	}
	return info, nil
}

// headerNode checks a tar header and returns its node, or nil for the
// bundle root ("." or "./").
func headerNode(hdr *tar.Header) (*node, error) {
	p, err := cleanEntryName(hdr.Name)
	if err != nil {
		return nil, err
	}
	var k kind
	switch hdr.Typeflag {
	case tar.TypeDir:
		k = kindDir
	case tar.TypeReg: // the reader turns the old TypeRegA into TypeReg
		k = kindFile
	case tar.TypeSymlink:
		k = kindSymlink
	case tar.TypeLink:
		k = kindHardlink
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		return nil, entryErr(hdr.Name, ErrUnsupportedType, "device or FIFO entries are not allowed in a bundle")
	default:
		return nil, entryErr(hdr.Name, ErrUnsupportedType, "unsupported tar entry type %q", hdr.Typeflag)
	}
	if p == "" {
		if k != kindDir {
			return nil, entryErr(hdr.Name, ErrUnsafePath, "the bundle root must be a directory")
		}
		return nil, nil
	}
	n := &node{path: p, kind: k, mode: normMode(p, k, fs.FileMode(hdr.Mode)&fs.ModePerm)}
	switch k {
	case kindFile:
		n.size = hdr.Size
	case kindSymlink, kindHardlink:
		n.target = hdr.Linkname
	}
	return n, nil
}

// readManifest reads and parses bundle.toml from the tar stream.
func readManifest(src *source, r io.Reader, size int64) (*Manifest, []byte, error) {
	if size > MaxManifestSize {
		return nil, nil, entryErr(ManifestName, ErrBadManifest, "larger than %d KiB", MaxManifestSize>>10)
	}
	data := make([]byte, size)
	if _, err := io.ReadFull(r, data); err != nil {
		return nil, nil, streamErr(src, err, ManifestName)
	}
	m, err := ParseManifest(data)
	if err != nil {
		return nil, nil, err
	}
	return m, data, nil
}

// drain reads what follows the tar archive to the end of the gzip stream,
// so the caller's reader is consumed to EOF and the gzip checksum is
// verified. Only zero padding may follow the archive.
func drain(src *source, zr io.Reader) error {
	buf := make([]byte, 32<<10)
	var total int64
	for {
		n, err := zr.Read(buf)
		total += int64(n)
		if n > 0 && (total > maxTrailer || !allZero(buf[:n])) {
			return newErr(ErrNotBundle.Error()+": data after the end of the tar archive", ErrNotBundle)
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return streamErr(src, err, "")
		}
	}
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// streamErr explains an error met while reading the stream: the caller's
// reader failing, or a corrupt or truncated bundle (ErrNotBundle). Other
// errors (from storing an entry) are returned as they are, naming entry.
func streamErr(src *source, err error, entry string) error {
	if src.err != nil {
		return fmt.Errorf("read bundle: %w", src.err)
	}
	where := ""
	if entry != "" {
		where = fmt.Sprintf(" in entry %q", entry)
	}
	var corrupt flate.CorruptInputError
	var after *afterGzipError
	switch {
	case errors.As(err, &after):
		return newErr(ErrNotBundle.Error()+": data after the end of the gzip stream", ErrNotBundle, err)
	case errors.Is(err, io.ErrUnexpectedEOF) || err == io.EOF:
		return newErr(fmt.Sprintf("%s: truncated%s", ErrNotBundle, where), ErrNotBundle, err)
	case errors.Is(err, gzip.ErrChecksum), errors.Is(err, gzip.ErrHeader), errors.As(err, &corrupt):
		return newErr(fmt.Sprintf("%s: corrupt gzip stream%s: %v", ErrNotBundle, where, err), ErrNotBundle, err)
	case errors.Is(err, tar.ErrHeader), errors.Is(err, tar.ErrFieldTooLong):
		return newErr(fmt.Sprintf("%s: the gzip stream does not hold a valid tar archive: %v", ErrNotBundle, err), ErrNotBundle, err)
	}
	if entry != "" {
		var ee *EntryError
		if errors.As(err, &ee) {
			return err
		}
		return &EntryError{Entry: entry, Reason: err.Error(), Err: err}
	}
	return newErr(fmt.Sprintf("%s: %v", ErrNotBundle, err), ErrNotBundle, err)
}

// multistream reads concatenated gzip members as one stream, as
// gzip.Reader does by default, but reports data after the last member
// that is not a gzip member as an afterGzipError.
type multistream struct {
	zr *gzip.Reader // with Multistream(false)
	br *bufio.Reader
}

// afterGzipError is the error for data after the end of a gzip member
// that does not start another member.
type afterGzipError struct{ err error }

func (e *afterGzipError) Error() string {
	return "data after the end of the gzip stream: " + e.err.Error()
}
func (e *afterGzipError) Unwrap() error { return e.err }

func (m *multistream) Read(p []byte) (int, error) {
	for {
		n, err := m.zr.Read(p)
		if err != io.EOF {
			return n, err
		}
		if n > 0 {
			return n, nil // the next Read sees io.EOF again
		}
		// The member ended, its checksum verified. Another may follow.
		if _, err := m.br.Peek(1); err != nil {
			return 0, err // io.EOF: the end of the stream
		}
		if err := m.zr.Reset(m.br); err != nil {
			if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, gzip.ErrHeader) {
				return 0, &afterGzipError{err: err}
			}
			return 0, err
		}
		m.zr.Multistream(false)
	}
}
