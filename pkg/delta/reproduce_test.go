package delta

import (
	"bytes"
	"compress/gzip"
	"errors"
	"testing"
)

// foreignGzip recompresses tarBytes with the standard library's gzip at
// level, header fields as given.
func foreignGzip(t *testing.T, tarBytes []byte, level int, hdr gzip.Header) []byte {
	t.Helper()
	var out bytes.Buffer
	zw, err := gzip.NewWriterLevel(&out, level)
	if err != nil {
		t.Fatal(err)
	}
	zw.Header = hdr
	zw.Write(tarBytes)
	zw.Close()
	return out.Bytes()
}

// GunzipReproducible gives the tar of a bundle Pack made, and refuses any
// other gzip of the same tar as not reproducible, early: after the header
// when the header differs, after a few blocks when only the deflate
// stream does.
func TestGunzipReproducible(t *testing.T) {
	gz, tarBytes := packDir(t, map[string][]byte{
		"files/a": randBytes(1, 24<<20), // incompressible: many blocks of the compressed stream
		"files/b": bytes.Repeat([]byte("compressible "), 200000),
	})
	var got bytes.Buffer
	n, err := GunzipReproducible(&got, bytes.NewReader(gz), int64(len(gz)))
	if err != nil {
		t.Fatalf("a bundle from Pack: %v", err)
	}
	if n != int64(len(tarBytes)) || !bytes.Equal(got.Bytes(), tarBytes) {
		t.Fatalf("got %d bytes of tar, want the bundle's %d", n, len(tarBytes))
	}

	sameHeader := foreignGzip(t, tarBytes, 6, gzip.Header{OS: 255})
	if !PackHeader(bytes.NewReader(sameHeader)) {
		t.Fatalf("the standard library's header % x is not Pack's % x", sameHeader[:10], gz[:10])
	}
	tests := []struct {
		name     string
		gz       []byte
		maxWrite int  // most tar bytes written before the refusal
		foreign  bool // refused as ErrNotReproducible (else any error)
	}{
		{"gzip -1 (another header)", foreignGzip(t, tarBytes, gzip.BestSpeed, gzip.Header{OS: 3}), 0, true},
		// The standard library's level 6 with Pack's header fields: the
		// header matches, the deflate stream does not.
		// pgzip compresses a few 1 MiB blocks ahead of the comparison.
		{"same header, another deflate", sameHeader, 12 << 20, true},
		{"data after the gzip stream", append(bytes.Clone(gz), 0), len(tarBytes), false},
		{"truncated", gz[:len(gz)-1], len(tarBytes), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w bytes.Buffer
			_, err := GunzipReproducible(&w, bytes.NewReader(tt.gz), int64(len(tt.gz)))
			if err == nil {
				t.Fatal("accepted")
			}
			if tt.foreign && !errors.Is(err, ErrNotReproducible) {
				t.Fatalf("got %v, want ErrNotReproducible", err)
			}
			if w.Len() > tt.maxWrite {
				t.Errorf("decompressed %d bytes before refusing, want at most %d", w.Len(), tt.maxWrite)
			}
		})
	}
}
