package publish

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/dropless/dropless/pkg/bundle"
	"github.com/dropless/dropless/updateserver/internal/store"
	"github.com/dropless/dropless/updateserver/internal/tufrepo"
)

// benchPayload is the size of the incompressible file inside the benchmark
// bundle; the packed bundle is a little larger.
const benchPayload = 256 << 20

// benchBundle is the packed benchmark bundle, built once per test binary
// and shared by every benchmark, so only one copy is ever in memory.
var benchBundle struct {
	once sync.Once
	data []byte
	err  error
}

func loadBenchBundle(b *testing.B) []byte {
	b.Helper()
	benchBundle.once.Do(func() {
		benchBundle.data, benchBundle.err = makeBenchBundle()
	})
	if benchBundle.err != nil {
		b.Fatal(benchBundle.err)
	}
	return benchBundle.data
}

// makeBenchBundle packs, with bundle.Pack, a bundle directory holding
// benchPayload bytes of pseudo-random (incompressible) data. The file is
// written and the bundle packed through temp files, and the bundle read
// back with one exact-size allocation.
func makeBenchBundle() ([]byte, error) {
	dir, err := os.MkdirTemp("", "publish-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	src := filepath.Join(dir, "bundle")
	if err := os.MkdirAll(filepath.Join(src, "files"), 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(src, bundle.ManifestName), []byte("product = \"bench\"\nversion = \"1.0.0\"\n"), 0o644); err != nil {
		return nil, err
	}
	f, err := os.Create(filepath.Join(src, "files", "payload.bin"))
	if err != nil {
		return nil, err
	}
	rng := rand.NewChaCha8([32]byte{1})
	buf := make([]byte, 1<<20)
	for n := 0; n < benchPayload; n += len(buf) {
		rng.Read(buf)
		if _, err := f.Write(buf); err != nil {
			f.Close()
			return nil, err
		}
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	out, err := os.Create(filepath.Join(dir, "bundle.tar.gz"))
	if err != nil {
		return nil, err
	}
	if err := bundle.Pack(context.Background(), src, out); err != nil {
		out.Close()
		return nil, err
	}
	if err := out.Close(); err != nil {
		return nil, err
	}
	return os.ReadFile(out.Name())
}

// newBenchPublisher is a Publisher on a real SQLite store and temp dirs.
func newBenchPublisher(b testing.TB) *Publisher {
	b.Helper()
	dir := b.TempDir()
	targets, uploads := filepath.Join(dir, "targets"), filepath.Join(dir, "uploads")
	for _, d := range []string{targets, uploads} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			b.Fatal(err)
		}
	}
	st, err := store.Open(context.Background(), filepath.Join(dir, "updateserver.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	return &Publisher{
		Store:      st,
		Repo:       tufrepo.Repo{Keys: tufrepo.KeyStore{Dir: filepath.Join(dir, "keys")}, Expiry: tufrepo.DefaultExpiry()},
		TargetsDir: targets,
		UploadsDir: uploads,
		Limits:     bundle.DefaultLimits(),
		MaxUpload:  16 << 30,
		Log:        slog.New(slog.DiscardHandler),
	}
}

// smallReads hands out at most n bytes per Read, as a net/http request
// body does (the client's transport writes 32 KiB chunks).
type smallReads struct {
	r io.Reader
	n int
}

func (s smallReads) Read(b []byte) (int, error) {
	if len(b) > s.n {
		b = b[:s.n]
	}
	return s.r.Read(b)
}

// BenchmarkUpload measures Publisher.Upload end to end on a ~256 MiB
// bundle of incompressible content: receive, hash, write and fsync to the
// staging dir, scan the bundle, record the upload in SQLite. reads=1MiB
// feeds the body in the copy buffer's size; reads=32KiB as net/http does.
// The staged file is removed between iterations, outside the timer.
func BenchmarkUpload(b *testing.B) {
	data := loadBenchBundle(b)
	for _, rs := range []struct {
		name string
		n    int
	}{{"reads=1MiB", 1 << 20}, {"reads=32KiB", 32 << 10}} {
		b.Run(rs.name, func(b *testing.B) {
			p := newBenchPublisher(b)
			ctx := context.Background()
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				up, err := p.Upload(ctx, smallReads{bytes.NewReader(data), rs.n}, "bench")
				if err != nil {
					b.Fatal(err)
				}
				if up.Length != int64(len(data)) {
					b.Fatalf("staged %d bytes, want %d", up.Length, len(data))
				}
				b.StopTimer()
				os.Remove(p.uploadPath(up.ID))
				b.StartTimer()
			}
		})
	}
}

// BenchmarkUploadParts runs each stage of Upload alone on the same bundle,
// to show which one bounds its throughput: Upload receives and writes
// (flushing behind) in one goroutine, and hashes and scans (sha256, gunzip
// + tar) in another, so with two or more cores its time is about
// max(write+fsync, sha256 + scan-via-pipe).
func BenchmarkUploadParts(b *testing.B) {
	data := loadBenchBundle(b)
	run := func(name string, f func(b *testing.B)) {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			f(b)
		})
	}

	run("sha256", func(b *testing.B) {
		h := sha256.New()
		for b.Loop() {
			h.Reset()
			for rest := data; len(rest) > 0; {
				n := min(len(rest), 1<<20)
				h.Write(rest[:n])
				rest = rest[n:]
			}
			h.Sum(nil)
		}
	})

	// gunzip alone (decompress and check the CRC), no tar parsing.
	run("gunzip", func(b *testing.B) {
		for b.Loop() {
			zr, err := gzip.NewReader(bytes.NewReader(data))
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, zr); err != nil {
				b.Fatal(err)
			}
		}
	})

	// bundle.Scan reading straight from memory.
	run("scan", func(b *testing.B) {
		for b.Loop() {
			if _, err := bundle.Scan(bytes.NewReader(data), bundle.DefaultLimits()); err != nil {
				b.Fatal(err)
			}
		}
	})

	// The asyncPipe alone: a writer goroutine feeding 1 MiB writes, the
	// reader discarding.
	run("pipe", func(b *testing.B) {
		for b.Loop() {
			p := newAsyncPipe(8)
			go func() {
				for rest := data; len(rest) > 0; {
					n := min(len(rest), 1<<20)
					p.Write(rest[:n])
					rest = rest[n:]
				}
				p.CloseWrite()
			}()
			if _, err := io.Copy(io.Discard, p); err != nil {
				b.Fatal(err)
			}
		}
	})

	// bundle.Scan fed through the asyncPipe from another goroutine, as in
	// Upload.
	run("scan-via-pipe", func(b *testing.B) {
		for b.Loop() {
			p := newAsyncPipe(8)
			go func() {
				for rest := data; len(rest) > 0; {
					n := min(len(rest), 1<<20)
					if _, err := p.Write(rest[:n]); err != nil {
						break
					}
					rest = rest[n:]
				}
				p.CloseWrite()
			}()
			_, err := bundle.Scan(p, bundle.DefaultLimits())
			p.CloseRead(err)
			if err != nil {
				b.Fatal(err)
			}
		}
	})

	// write(2) in 1 MiB pieces to a new file in a temp dir, then fsync and
	// close; the file is removed outside the timer.
	run("write+fsync", func(b *testing.B) {
		dir := b.TempDir()
		for b.Loop() {
			f, err := os.CreateTemp(dir, "stage-*.part")
			if err != nil {
				b.Fatal(err)
			}
			for rest := data; len(rest) > 0; {
				n := min(len(rest), 1<<20)
				if _, err := f.Write(rest[:n]); err != nil {
					b.Fatal(err)
				}
				rest = rest[n:]
			}
			if err := f.Sync(); err != nil {
				b.Fatal(err)
			}
			if err := f.Close(); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			os.Remove(f.Name())
			b.StartTimer()
		}
	})

	// The writer goroutine's work in Upload: sha256 and write (no fsync),
	// through io.MultiWriter as Upload does, without the scan.
	run("sha256+write", func(b *testing.B) {
		dir := b.TempDir()
		for b.Loop() {
			f, err := os.CreateTemp(dir, "stage-*.part")
			if err != nil {
				b.Fatal(err)
			}
			h := sha256.New()
			w := io.MultiWriter(f, h)
			for rest := data; len(rest) > 0; {
				n := min(len(rest), 1<<20)
				if _, err := w.Write(rest[:n]); err != nil {
					b.Fatal(err)
				}
				rest = rest[n:]
			}
			h.Sum(nil)
			if err := f.Close(); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			os.Remove(f.Name())
			b.StartTimer()
		}
	})
}
