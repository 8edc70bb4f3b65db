package delta

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/dropless/dropless/pkg/bundle"

	"github.com/klauspost/compress/gzip"
)

// packHeader is the gzip header bundle.NewPackGzip writes (10 bytes).
var packHeader = sync.OnceValue(func() []byte {
	var b bytes.Buffer
	zw, err := bundle.NewPackGzip(&b)
	if err != nil {
		panic(err)
	}
	if err := zw.Close(); err != nil {
		panic(err)
	}
	return b.Bytes()[:10]
})

// PackHeader reports whether the gzip stream in gz starts with the header
// [bundle.NewPackGzip] writes: when it does not, the bundle was packed by
// another gzip and cannot be rebuilt. It reads 10 bytes.
func PackHeader(gz io.ReaderAt) bool {
	h := make([]byte, 10)
	n, _ := gz.ReadAt(h, 0)
	return n == len(h) && bytes.Equal(h, packHeader())
}

// GunzipReproducible decompresses the bundle gz (size bytes) to w, as
// [Gunzip] does, and checks in the same pass that recompressing the tar
// as [Apply] does gives gz byte for byte: the check [Reproducible] makes,
// without reading the tar back or hashing it. It fails with
// [ErrNotReproducible] a few blocks after the first that differs (the
// compressor works a few 1 MiB blocks ahead), or at once when the gzip
// header differs, so a bundle from another packer costs a few MiB, not the
// whole bundle. On success
// it returns the tar's size.
func GunzipReproducible(w io.Writer, gz io.ReaderAt, size int64) (int64, error) {
	if !PackHeader(gz) {
		return 0, ErrNotReproducible
	}
	cmp := &compareWriter{r: io.NewSectionReader(gz, 0, size), buf: make([]byte, 256<<10)}
	zw, err := bundle.NewPackGzip(cmp)
	if err != nil {
		return 0, err
	}
	zr, err := gzip.NewReader(bufio.NewReaderSize(io.NewSectionReader(gz, 0, size), 256<<10))
	if err != nil {
		zw.Close()
		return 0, err
	}
	n, err := io.Copy(io.MultiWriter(w, zw), zr)
	cerr := zw.Close()
	switch {
	case cmp.err != nil:
		return n, cmp.err
	case cmp.differs || errors.Is(cerr, ErrNotReproducible) || errors.Is(err, ErrNotReproducible):
		return n, ErrNotReproducible
	case err != nil:
		return n, err
	case cerr != nil:
		return n, cerr
	case cmp.off != size:
		return n, ErrNotReproducible // the bundle goes on after its gzip stream
	}
	return n, nil
}

// compareWriter checks that what is written to it is what r holds, in
// order; it fails with ErrNotReproducible at the first difference.
type compareWriter struct {
	r       io.Reader
	buf     []byte
	off     int64
	differs bool
	err     error // reading r failed
}

func (c *compareWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if c.differs {
		return 0, ErrNotReproducible
	}
	n := 0
	for len(p) > 0 {
		b := c.buf[:min(len(c.buf), len(p))]
		m, err := io.ReadFull(c.r, b)
		if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
			c.err = fmt.Errorf("read the bundle back: %w", err)
			return n, c.err
		}
		if err != nil || !bytes.Equal(b, p[:m]) {
			c.differs = true // the bundle differs or is shorter
			return n, ErrNotReproducible
		}
		c.off += int64(m)
		n += m
		p = p[m:]
	}
	return n, nil
}
