package delta

import (
	"archive/tar"
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/dropless/dropless/pkg/bundle"

	"github.com/klauspost/compress/zstd"
)

// ErrNotReproducible is returned by Create when recompressing the result's
// tar does not give the result bundle byte for byte (it was not made by
// bundle.Pack, or by another Go release's compress/flate): an agent could
// not rebuild it, so it gets no delta.
var ErrNotReproducible = errors.New("the bundle cannot be rebuilt from its tar (not packed by this server's packer)")

// entry is where one tar entry's content lies in its tar.
type entry struct {
	name      string
	off, size int64
	sum       [32]byte
}

// scanTar lists the regular files of the tar in r, with their data offsets
// and hashes.
func scanTar(r io.ReaderAt, size int64) ([]entry, error) {
	cr := &countReader{r: io.NewSectionReader(r, 0, size)}
	tr := tar.NewReader(cr)
	var out []entry
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if hdr.Typeflag != tar.TypeReg || hdr.Size == 0 {
			continue
		}
		e := entry{name: hdr.Name, off: cr.n, size: hdr.Size}
		h := sha256.New()
		if _, err := io.Copy(h, tr); err != nil {
			return nil, err
		}
		copy(e.sum[:], h.Sum(nil))
		out = append(out, e)
	}
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// Reproducible checks that recompressing the tar in result (what Apply
// does) gives exactly the bundle whose sha256 is fullSHA256.
func Reproducible(result io.ReaderAt, size int64, fullSHA256 string) error {
	h := sha256.New()
	gw, err := bundle.NewPackGzip(h)
	if err != nil {
		return err
	}
	if _, err := io.Copy(gw, io.NewSectionReader(result, 0, size)); err != nil {
		return err
	}
	if err := gw.Close(); err != nil {
		return err
	}
	if hex.EncodeToString(h.Sum(nil)) != fullSHA256 {
		return ErrNotReproducible
	}
	return nil
}

// Create writes to w the delta that rebuilds the bundle whose uncompressed
// tar is result from the bundle whose uncompressed tar is base. Call
// Reproducible first: a delta of a bundle that is not reproducible
// rebuilds a different bundle, which the agent refuses.
func Create(w io.Writer, base io.ReaderAt, baseSize int64, result io.ReaderAt, resultSize int64) error {
	baseEntries, err := scanTar(base, baseSize)
	if err != nil {
		return fmt.Errorf("read the base tar: %w", err)
	}
	resEntries, err := scanTar(result, resultSize)
	if err != nil {
		return fmt.Errorf("read the result tar: %w", err)
	}
	bySum := map[[32]byte]entry{}
	byName := map[string]entry{}
	for _, e := range baseEntries {
		bySum[e.sum] = e
		byName[e.name] = e
	}
	if _, err := io.WriteString(w, Magic); err != nil {
		return err
	}
	zw, err := zstd.NewWriter(w, zstd.WithWindowSize(outerWindow), zstd.WithEncoderLevel(zstd.SpeedBetterCompression), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return err
	}
	o := &opWriter{w: bufio.NewWriterSize(zw, 256<<10), result: result}
	o.uvarint(uint64(resultSize))
	o.uvarint(CodecGzipPack)
	var pos int64
	for _, e := range resEntries {
		if err := o.literal(pos, e.off); err != nil {
			return err
		}
		pos = e.off + e.size
		if b, ok := bySum[e.sum]; ok && b.size == e.size {
			o.op(opCopy)
			o.uvarint(uint64(b.off))
			o.uvarint(uint64(b.size))
			continue
		}
		if b, ok := byName[e.name]; ok && b.size <= MaxRef && e.size <= 4*MaxRef {
			if err := o.zstdRef(base, b, e); err != nil {
				return err
			}
			continue
		}
		if err := o.literal(e.off, pos); err != nil {
			return err
		}
	}
	if err := o.literal(pos, resultSize); err != nil {
		return err
	}
	o.op(opEnd)
	if err := o.w.Flush(); err != nil {
		return err
	}
	return zw.Close()
}

// opWriter writes ops; its errors are those of the underlying writer,
// reported by Flush.
type opWriter struct {
	w      *bufio.Writer
	result io.ReaderAt
	tmp    [binary.MaxVarintLen64]byte
}

func (o *opWriter) op(c byte) { o.w.WriteByte(c) }

func (o *opWriter) uvarint(v uint64) {
	n := binary.PutUvarint(o.tmp[:], v)
	o.w.Write(o.tmp[:n])
}

// literal writes result[from:to] as literal ops.
func (o *opWriter) literal(from, to int64) error {
	for from < to {
		n := min(to-from, maxLiteral)
		o.op(opLiteral)
		o.uvarint(uint64(n))
		if _, err := io.Copy(o.w, io.NewSectionReader(o.result, from, n)); err != nil {
			return err
		}
		from += n
	}
	return nil
}

// zstdRef writes the result file e compressed against the base file b.
func (o *opWriter) zstdRef(base io.ReaderAt, b, e entry) error {
	ref := make([]byte, b.size)
	if _, err := base.ReadAt(ref, b.off); err != nil {
		return err
	}
	data := make([]byte, e.size)
	if _, err := o.result.ReadAt(data, e.off); err != nil {
		return err
	}
	// The window covers the reference and the file, no more: a larger one
	// costs memory and time for nothing.
	window := zstd.MinWindowSize
	for window < len(ref)+len(data) && window < refWindow {
		window <<= 1
	}
	enc, err := zstd.NewWriter(nil, zstd.WithWindowSize(window), zstd.WithEncoderDictRaw(0, ref),
		zstd.WithEncoderLevel(zstd.SpeedBestCompression), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return err
	}
	frame := enc.EncodeAll(data, nil)
	enc.Close()
	o.op(opZstdRef)
	o.uvarint(uint64(b.off))
	o.uvarint(uint64(b.size))
	o.uvarint(uint64(e.size))
	o.uvarint(uint64(len(frame)))
	_, err = o.w.Write(frame)
	return err
}
