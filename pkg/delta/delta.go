// Package delta makes and applies bundle deltas: the bytes that turn one
// release's bundle (the base) into the next's (the result), so a patch
// release does not travel whole.
//
// A bundle is a gzip'd tar; one changed file changes every compressed byte
// after it, so deltas work on the uncompressed tar. [Create] walks both
// tars entry by entry and writes, for each stretch of the result:
//
//   - copy: a file whose content the base holds byte for byte is copied
//     from the base tar (a few bytes in the delta, whatever its size);
//   - zstd-ref: a file that changed is compressed with zstd using the
//     base's file of the same path as a raw dictionary (klauspost/compress
//     WithEncoderDictRaw), so only what differs costs bytes; references
//     are at most [MaxRef] bytes, the encoder's window covers all of one;
//   - literal: tar headers, new files and the end of the archive.
//
// The whole op stream is itself zstd-compressed. [Apply] rebuilds the tar
// and recompresses it exactly as [bundle.Pack] does (gzip level 6, no name,
// no time, OS byte 255), so the result is byte for byte the full bundle
// when that bundle came from Pack; [Create] checks this before it returns a
// delta (a bundle made by another gzip cannot be rebuilt and gets none).
//
// Apply's input is untrusted until the rebuilt bundle's hash is checked by
// the caller: every length is checked against the declared tar size, the
// declared tar size against a caller's limit, the output against the full
// bundle's signed length, and zstd windows and references are bounded, so
// a hostile delta costs at most a bounded amount of memory and of output.
package delta

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/dropless/dropless/pkg/bundle"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// Magic opens every delta file; the digit is the format version.
const Magic = "DLDELTA1"

// Codec names how the rebuilt tar is compressed into the bundle.
const (
	// CodecGzipPack is bundle.Pack's gzip (bundle.NewPackGzip).
	CodecGzipPack = 1
)

const (
	// MaxRef is the largest base file used as a zstd reference. Larger
	// changed files travel as literals (still zstd-compressed).
	MaxRef = 64 << 20
	// maxLiteral bounds one literal op, so the decoder's buffer is small.
	maxLiteral = 1 << 20
	// refWindow is the zstd window of zstd-ref frames: a power of two that
	// covers MaxRef, so a match may reach anywhere in the reference.
	refWindow = 128 << 20
	// outerWindow is the window of the op stream's own compression.
	outerWindow = 8 << 20
)

// op codes of the stream.
const (
	opCopy    = 'C'
	opLiteral = 'L'
	opZstdRef = 'Z'
	opEnd     = 'E'
)

// ErrCorrupt is wrapped by every error Apply returns for a delta that is
// not well formed, refers outside its base, or rebuilds more than allowed.
var ErrCorrupt = errors.New("the delta is corrupt")

func corrupt(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, a...))
}

// Limits bound what Apply does with an untrusted delta.
type Limits struct {
	// MaxTar is the largest rebuilt tar accepted (uncompressed bytes).
	MaxTar int64
	// MaxOut is the length of the full bundle: Apply refuses to write
	// more. Zero: no limit beyond MaxTar.
	MaxOut int64
}

// Apply rebuilds a bundle from base (the uncompressed tar of the base
// bundle, read at random) and the delta d, writing the compressed bundle to
// out. It returns the number of bytes written. The caller must check the
// result's hash and length against the signed target before using it.
func Apply(out io.Writer, base io.ReaderAt, baseSize int64, d io.Reader, lim Limits) (int64, error) {
	magic := make([]byte, len(Magic))
	if _, err := io.ReadFull(d, magic); err != nil || string(magic) != Magic {
		return 0, corrupt("it does not start with %q", Magic)
	}
	zr, err := zstd.NewReader(d, zstd.WithDecoderMaxWindow(outerWindow), zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true))
	if err != nil {
		return 0, err
	}
	defer zr.Close()
	br := bufio.NewReader(zr)
	tarSize, err := binary.ReadUvarint(br)
	if err != nil {
		return 0, corrupt("no header: %v", err)
	}
	codec, err := binary.ReadUvarint(br)
	if err != nil {
		return 0, corrupt("no header: %v", err)
	}
	if codec != CodecGzipPack {
		return 0, corrupt("unknown codec %d (a newer server made it?)", codec)
	}
	if lim.MaxTar > 0 && tarSize > uint64(lim.MaxTar) {
		return 0, corrupt("it rebuilds %d bytes, more than the %d allowed", tarSize, lim.MaxTar)
	}
	cw := &countWriter{w: out, max: lim.MaxOut}
	gw, err := bundle.NewPackGzip(cw)
	if err != nil {
		return 0, err
	}
	a := applier{base: base, baseSize: baseSize, br: br, w: gw, left: int64(tarSize)}
	if err := a.run(); err != nil {
		return cw.n, err
	}
	if err := gw.Close(); err != nil {
		return cw.n, err
	}
	return cw.n, nil
}

type applier struct {
	base     io.ReaderAt
	baseSize int64
	br       *bufio.Reader
	w        io.Writer
	left     int64 // tar bytes still to write
	buf      []byte
}

func (a *applier) run() error {
	for {
		op, err := a.br.ReadByte()
		if err != nil {
			return corrupt("it ends without an end mark: %v", err)
		}
		switch op {
		case opEnd:
			if a.left != 0 {
				return corrupt("it ends %d bytes short of the declared size", a.left)
			}
			if _, err := a.br.ReadByte(); err != io.EOF {
				return corrupt("data after the end mark")
			}
			return nil
		case opCopy:
			off, n, err := a.readRange()
			if err != nil {
				return err
			}
			if err := a.take(n); err != nil {
				return err
			}
			if _, err := io.Copy(a.w, io.NewSectionReader(a.base, off, n)); err != nil {
				return fmt.Errorf("copy from base: %w", err)
			}
		case opLiteral:
			n, err := a.uvarint()
			if err != nil {
				return err
			}
			if n > maxLiteral {
				return corrupt("a literal of %d bytes", n)
			}
			if err := a.take(int64(n)); err != nil {
				return err
			}
			if _, err := io.CopyN(a.w, a.br, int64(n)); err != nil {
				return corrupt("a literal is cut short: %v", err)
			}
		case opZstdRef:
			if err := a.zstdRef(); err != nil {
				return err
			}
		default:
			return corrupt("unknown op %q", op)
		}
	}
}

// take accounts n more output bytes against the declared tar size.
func (a *applier) take(n int64) error {
	if n < 0 || n > a.left {
		return corrupt("it writes past the declared size")
	}
	a.left -= n
	return nil
}

func (a *applier) uvarint() (uint64, error) {
	v, err := binary.ReadUvarint(a.br)
	if err != nil {
		return 0, corrupt("a truncated op: %v", err)
	}
	return v, nil
}

// readRange reads an offset and a length that must lie inside the base.
func (a *applier) readRange() (int64, int64, error) {
	off, err := a.uvarint()
	if err != nil {
		return 0, 0, err
	}
	n, err := a.uvarint()
	if err != nil {
		return 0, 0, err
	}
	if off > uint64(a.baseSize) || n > uint64(a.baseSize)-off {
		return 0, 0, corrupt("a range %d+%d outside the base (%d bytes)", off, n, a.baseSize)
	}
	return int64(off), int64(n), nil
}

func (a *applier) zstdRef() error {
	off, refLen, err := a.readRange()
	if err != nil {
		return err
	}
	if refLen > MaxRef {
		return corrupt("a reference of %d bytes", refLen)
	}
	outLen, err := a.uvarint()
	if err != nil {
		return err
	}
	frameLen, err := a.uvarint()
	if err != nil {
		return err
	}
	if outLen > 4*MaxRef {
		return corrupt("a changed file of %d bytes", outLen)
	}
	if err := a.take(int64(outLen)); err != nil {
		return err
	}
	// The frame cannot be larger than what it rebuilds plus zstd's
	// per-block overhead; anything else is a lie.
	if frameLen > outLen+outLen/64+1024 {
		return corrupt("a frame of %d bytes for %d", frameLen, outLen)
	}
	if cap(a.buf) < int(refLen) {
		a.buf = make([]byte, refLen)
	}
	ref := a.buf[:refLen]
	if _, err := a.base.ReadAt(ref, off); err != nil && !(err == io.EOF && refLen == 0) {
		return fmt.Errorf("read base: %w", err)
	}
	// Create's window covers the reference and the file and no more; a
	// frame asking for more is refused before the decoder allocates it.
	window := uint64(zstd.MinWindowSize)
	for window < uint64(refLen)+outLen && window < refWindow {
		window <<= 1
	}
	opts := []zstd.DOption{zstd.WithDecoderMaxWindow(window), zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true)}
	if refLen > 0 {
		opts = append(opts, zstd.WithDecoderDictRaw(0, ref))
	}
	fr := &io.LimitedReader{R: a.br, N: int64(frameLen)}
	zr, err := zstd.NewReader(fr, opts...)
	if err != nil {
		return corrupt("%v", err)
	}
	defer zr.Close()
	if _, err := io.CopyN(a.w, zr, int64(outLen)); err != nil {
		return corrupt("a changed file does not decode: %v", err)
	}
	// The frame must end exactly where it says.
	var one [1]byte
	if n, _ := zr.Read(one[:]); n != 0 {
		return corrupt("a changed file decodes to more than it declares")
	}
	if _, err := io.Copy(io.Discard, fr); err != nil || fr.N != 0 {
		return corrupt("a frame is cut short")
	}
	return nil
}

// countWriter counts bytes and refuses to pass max.
type countWriter struct {
	w   io.Writer
	n   int64
	max int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	if c.max > 0 && c.n+int64(len(p)) > c.max {
		return 0, corrupt("the rebuilt bundle is longer than the signed length %d", c.max)
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Gunzip decompresses a gzip'd bundle to w: the base tar Apply reads.
func Gunzip(w io.Writer, r io.Reader) (int64, error) {
	zr, err := gzip.NewReader(bufio.NewReaderSize(r, 256<<10))
	if err != nil {
		return 0, err
	}
	defer zr.Close()
	return io.Copy(w, zr)
}
