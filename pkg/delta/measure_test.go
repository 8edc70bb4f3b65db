package delta

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

// TestMeasure reports delta size and rebuild time between two bundles on
// disk: DELTA_MEASURE="base.tar.gz result.tar.gz" (see README, "Delta
// updates"). It writes the delta and both tars next to result for bsdiff.
func TestMeasure(t *testing.T) {
	spec := os.Getenv("DELTA_MEASURE")
	if spec == "" {
		t.Skip("set DELTA_MEASURE=\"BASE.tar.gz RESULT.tar.gz\" to measure")
	}
	var basePath, resPath string
	if _, err := fmtSscan(spec, &basePath, &resPath); err != nil {
		t.Fatal(err)
	}
	baseGz, _ := os.ReadFile(basePath)
	resGz, err := os.ReadFile(resPath)
	if err != nil {
		t.Fatal(err)
	}
	var base, res bytes.Buffer
	Gunzip(&base, bytes.NewReader(baseGz))
	Gunzip(&res, bytes.NewReader(resGz))
	os.WriteFile(basePath+".tar", base.Bytes(), 0o644)
	os.WriteFile(resPath+".tar", res.Bytes(), 0o644)
	sum := sha256.Sum256(resGz)
	if err := Reproducible(bytes.NewReader(res.Bytes()), int64(res.Len()), hex.EncodeToString(sum[:])); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var d bytes.Buffer
	if err := Create(&d, bytes.NewReader(base.Bytes()), int64(base.Len()), bytes.NewReader(res.Bytes()), int64(res.Len())); err != nil {
		t.Fatal(err)
	}
	created := time.Since(start)
	os.WriteFile(filepath.Join(filepath.Dir(resPath), "delta.bin"), d.Bytes(), 0o644)
	start = time.Now()
	var out bytes.Buffer
	if _, err := Apply(&out, bytes.NewReader(base.Bytes()), int64(base.Len()), bytes.NewReader(d.Bytes()), Limits{MaxOut: int64(len(resGz))}); err != nil {
		t.Fatal(err)
	}
	applied := time.Since(start)
	if !bytes.Equal(out.Bytes(), resGz) {
		t.Fatal("rebuilt bundle differs")
	}
	t.Logf("full bundle %d bytes (tar %d); per-file delta %d bytes = %.2f %% of the bundle; create %v, rebuild %v",
		len(resGz), res.Len(), d.Len(), 100*float64(d.Len())/float64(len(resGz)), created.Round(time.Millisecond), applied.Round(time.Millisecond))

	// Whole-tar zstd with the base tar as reference, for comparison.
	if base.Len() < 512<<20 {
		w := 1 << 10
		for w < base.Len()+res.Len() && w < 512<<20 {
			w <<= 1
		}
		start = time.Now()
		enc, err := zstd.NewWriter(nil, zstd.WithWindowSize(w), zstd.WithEncoderDictRaw(0, base.Bytes()), zstd.WithEncoderLevel(zstd.SpeedBestCompression))
		if err != nil {
			t.Fatal(err)
		}
		whole := enc.EncodeAll(res.Bytes(), nil)
		c := time.Since(start)
		dec, _ := zstd.NewReader(nil, zstd.WithDecoderDictRaw(0, base.Bytes()), zstd.WithDecoderMaxWindow(uint64(w)))
		start = time.Now()
		back, err := dec.DecodeAll(whole, nil)
		if err != nil || !bytes.Equal(back, res.Bytes()) {
			t.Fatalf("whole-tar zstd round trip: %v", err)
		}
		t.Logf("whole-tar zstd --patch-from style (window %d MiB): %d bytes = %.2f %%; create %v, decode %v",
			w>>20, len(whole), 100*float64(len(whole))/float64(len(resGz)), c.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	}
}

func fmtSscan(s string, a, b *string) (int, error) { return fmt.Sscan(s, a, b) }
