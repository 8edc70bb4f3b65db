package bundle

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"io"
	mrand "math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
)

func TestScanRefuses(t *testing.T) {
	for _, tt := range refusalTests() {
		t.Run(tt.name, func(t *testing.T) {
			info, err := Scan(bytes.NewReader(tt.in), tt.lim)
			if info != nil {
				t.Error("Scan returned Info with an error")
			}
			checkRefusal(t, err, tt)
		})
	}
}

// countingReader counts the bytes read and whether EOF was returned.
type countingReader struct {
	r   io.Reader
	n   int
	eof bool
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	if err == io.EOF {
		c.eof = true
	}
	return n, err
}

func TestScanReadsToEOF(t *testing.T) {
	for _, tt := range []struct {
		name string
		in   []byte
	}{
		{"packed", packDir(t, sampleDir(t))},
		{"record padding", gz(append(rawTar([]te{{name: "files/", typ: '5'}}), make([]byte, 20480)...))},
		{"two gzip members", append(gz(rawTar([]te{{name: "files/", typ: '5'}})[:512]), gz(make([]byte, 1024))...)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cr := &countingReader{r: bytes.NewReader(tt.in)}
			h := sha256.New()
			if _, err := Scan(io.TeeReader(cr, h), Limits{}); err != nil {
				t.Fatal(err)
			}
			if cr.n != len(tt.in) || !cr.eof {
				t.Errorf("Scan read %d of %d bytes (EOF seen: %v)", cr.n, len(tt.in), cr.eof)
			}
			if want := sha256.Sum256(tt.in); !bytes.Equal(h.Sum(nil), want[:]) {
				t.Error("a hash of the stream read by Scan differs from the hash of the input")
			}
		})
	}
}

func TestScanManifest(t *testing.T) {
	info, err := Scan(bytes.NewReader(validTarGz()), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if info.Manifest == nil || info.Manifest.Product != "acme" || info.Manifest.Version != "1.0.0" {
		t.Errorf("Manifest = %+v", info.Manifest)
	}
	if len(info.Migrations) != 1 || len(info.Hooks) != 1 {
		t.Errorf("Migrations %q Hooks %q", info.Migrations, info.Hooks)
	}
}

func TestDefaultLimits(t *testing.T) {
	lim := DefaultLimits()
	if lim.MaxEntries != 200_000 || lim.MaxEntrySize != 8<<30 || lim.MaxTotalSize != 32<<30 {
		t.Errorf("DefaultLimits = %+v", lim)
	}
	if got := (Limits{MaxEntries: 5}).withDefaults(); got.MaxEntries != 5 || got.MaxEntrySize != lim.MaxEntrySize || got.MaxTotalSize != lim.MaxTotalSize {
		t.Errorf("withDefaults = %+v", got)
	}
}

// BenchmarkScan scans a bundle of 64 MiB of files: random (incompressible:
// gzip stores them, and Scan's cost is the copying) or text-like
// (compressible about 3:1, as programs and SQL are: Scan's cost is
// inflating). SetBytes counts the uncompressed bytes.
func BenchmarkScan(b *testing.B) {
	words := strings.Fields("select insert update from where table index the of and to in is for on with as by func return if else end begin commit")
	for _, kind := range []string{"random", "text"} {
		b.Run(kind, func(b *testing.B) {
			dir := filepath.Join(b.TempDir(), "bundle")
			var specs []spec
			chunk := make([]byte, 1<<20)
			rng := mrand.New(mrand.NewPCG(1, 2))
			for i := range 64 {
				if kind == "random" {
					rand.Read(chunk)
				} else {
					chunk = chunk[:0]
					for len(chunk) < 1<<20 {
						chunk = append(chunk, words[rng.IntN(len(words))]...)
						chunk = append(chunk, " \n"[rng.IntN(8)/7])
					}
					chunk = chunk[:1<<20]
				}
				specs = append(specs, spec{path: filepath.ToSlash(filepath.Join("files", "data", string(rune('a'+i%26))+string(rune('a'+i/26)))), content: string(chunk)})
			}
			writeSpecs(b, dir, specs)
			var buf bytes.Buffer
			if err := Pack(context.Background(), dir, &buf); err != nil {
				b.Fatal(err)
			}
			data := buf.Bytes()
			b.SetBytes(64 << 20)
			b.ReportMetric(float64(len(data))/(64<<20), "gz/raw")
			b.ResetTimer()
			for b.Loop() {
				if _, err := Scan(bytes.NewReader(data), Limits{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
