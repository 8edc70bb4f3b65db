package delta

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/dropless/dropless/pkg/bundle"
)

// packDir packs a bundle directory made of files (path -> content) and
// returns the bundle and its uncompressed tar.
func packDir(t testing.TB, files map[string][]byte) (gz, tarBytes []byte) {
	t.Helper()
	dir := t.TempDir()
	for p, b := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	if err := bundle.Pack(context.Background(), dir, &out); err != nil {
		t.Fatal(err)
	}
	var tb bytes.Buffer
	if _, err := Gunzip(&tb, bytes.NewReader(out.Bytes())); err != nil {
		t.Fatal(err)
	}
	return out.Bytes(), tb.Bytes()
}

func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func makeDelta(t testing.TB, base, result, resultGz []byte) []byte {
	t.Helper()
	sum := sha256.Sum256(resultGz)
	if err := Reproducible(bytes.NewReader(result), int64(len(result)), hex.EncodeToString(sum[:])); err != nil {
		t.Fatal(err)
	}
	var d bytes.Buffer
	if err := Create(&d, bytes.NewReader(base), int64(len(base)), bytes.NewReader(result), int64(len(result))); err != nil {
		t.Fatal(err)
	}
	return d.Bytes()
}

// A patch release: one changed file among unchanged big ones, one new
// file, one removed. The delta rebuilds the new bundle byte for byte and
// is a small fraction of it.
func TestCreateApplyRebuildsTheBundle(t *testing.T) {
	big := randBytes(1, 4<<20)
	lib := randBytes(2, 2<<20)
	changed := bytes.Clone(lib)
	copy(changed[1000:], []byte("patched!"))
	_, base := packDir(t, map[string][]byte{"files/big.bin": big, "files/lib.so": lib, "files/old.txt": []byte("gone")})
	resGz, res := packDir(t, map[string][]byte{"files/big.bin": big, "files/lib.so": changed, "files/new.txt": []byte("hello")})
	d := makeDelta(t, base, res, resGz)
	if len(d)*100 > len(resGz) {
		t.Errorf("delta is %d bytes for a %d-byte bundle: want under 1%%", len(d), len(resGz))
	}
	var out bytes.Buffer
	n, err := Apply(&out, bytes.NewReader(base), int64(len(base)), bytes.NewReader(d), Limits{MaxTar: 1 << 30, MaxOut: int64(len(resGz))})
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(len(resGz)) || !bytes.Equal(out.Bytes(), resGz) {
		t.Fatalf("rebuilt %d bytes that differ from the %d-byte bundle", n, len(resGz))
	}
}

// Applied to the wrong base, a delta rebuilds something else (the caller's
// hash check refuses it) or fails; here the ranges fall outside the base.
func TestApplyRefusesBadInput(t *testing.T) {
	_, base := packDir(t, map[string][]byte{"files/a": randBytes(3, 100<<10)})
	resGz, res := packDir(t, map[string][]byte{"files/a": randBytes(3, 100<<10), "files/b": []byte("x")})
	d := makeDelta(t, base, res, resGz)
	cases := []struct {
		name string
		base []byte
		d    []byte
		lim  Limits
	}{
		{"short base", base[:512], d, Limits{}},
		{"no magic", base, d[1:], Limits{}},
		{"truncated", base, d[:len(d)-5], Limits{}},
		{"tar over limit", base, d, Limits{MaxTar: 1024}},
		{"output over signed length", base, d, Limits{MaxOut: 100}},
		{"garbage", base, append([]byte(Magic), randBytes(4, 300)...), Limits{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Apply(new(bytes.Buffer), bytes.NewReader(c.base), int64(len(c.base)), bytes.NewReader(c.d), c.lim)
			if err == nil {
				t.Fatal("Apply accepted it")
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Logf("error (not ErrCorrupt): %v", err)
			}
		})
	}
}

// A bundle gzip'd by someone else cannot be rebuilt: Reproducible says so.
func TestReproducibleRefusesForeignGzip(t *testing.T) {
	_, res := packDir(t, map[string][]byte{"files/a": []byte("a")})
	if err := Reproducible(bytes.NewReader(res), int64(len(res)), hex.EncodeToString(make([]byte, 32))); !errors.Is(err, ErrNotReproducible) {
		t.Fatalf("got %v, want ErrNotReproducible", err)
	}
}

func FuzzApply(f *testing.F) {
	_, base := packDir(f, map[string][]byte{"files/a": randBytes(5, 20<<10), "files/c": []byte("same")})
	resGz, res := packDir(f, map[string][]byte{"files/a": append(randBytes(5, 20<<10), 'x'), "files/b": []byte("new"), "files/c": []byte("same")})
	f.Add(makeDelta(f, base, res, resGz))
	f.Add([]byte(Magic))
	f.Fuzz(func(t *testing.T, d []byte) {
		// Bounded: never more than the limits, whatever d says.
		var out bytes.Buffer
		Apply(&out, bytes.NewReader(base), int64(len(base)), bytes.NewReader(d), Limits{MaxTar: 1 << 20, MaxOut: int64(len(resGz))})
		if out.Len() > len(resGz) {
			t.Fatalf("wrote %d bytes, more than the %d allowed", out.Len(), len(resGz))
		}
	})
}

// BenchmarkApply rebuilds a 6 MiB bundle with one changed file: the
// agent's cost of a delta update (the gzip recompression dominates).
func BenchmarkApply(b *testing.B) {
	big, lib := randBytes(1, 4<<20), randBytes(2, 2<<20)
	changed := bytes.Clone(lib)
	copy(changed[1000:], "patched!")
	_, base := packDir(b, map[string][]byte{"files/big.bin": big, "files/lib.so": lib})
	resGz, res := packDir(b, map[string][]byte{"files/big.bin": big, "files/lib.so": changed})
	d := makeDelta(b, base, res, resGz)
	b.SetBytes(int64(len(res)))
	for b.Loop() {
		if _, err := Apply(io.Discard, bytes.NewReader(base), int64(len(base)), bytes.NewReader(d), Limits{MaxOut: int64(len(resGz))}); err != nil {
			b.Fatal(err)
		}
	}
}
