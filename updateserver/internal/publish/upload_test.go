package publish

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/dropless/dropless/pkg/bundle"
	"github.com/dropless/dropless/updateserver/internal/fault"
)

// packed packs a bundle directory holding files (path -> content).
func packed(t *testing.T, files map[string][]byte) []byte {
	t.Helper()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, bundle.ManifestName), []byte("product = \"acme\"\nversion = \"1.0.0\"\n"), 0o644)
	for p, b := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	if err := bundle.Pack(context.Background(), dir, &out); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// TestUploadStreamsManyChunks: a bundle of many pipe chunks, sent in the
// small reads an HTTP body gives, is staged whole, with the sha256 of the
// bytes stored; bad ones, found at any chunk, are refused with the reason
// and leave nothing in the staging directory.
func TestUploadStreamsManyChunks(t *testing.T) {
	smallSyncSteps(t)
	p := newBenchPublisher(t)
	rng := rand.NewChaCha8([32]byte{7})
	payload := make([]byte, 5*pipeChunk+12345) // incompressible: gzip stores it
	rng.Read(payload)
	good := packed(t, map[string][]byte{"files/payload.bin": payload, "files/text.txt": bytes.Repeat([]byte("compressible "), 300000)})
	if len(good) < 5*pipeChunk {
		t.Fatalf("the bundle is %d bytes, want several chunks", len(good))
	}
	ctx := context.Background()

	up, err := p.Upload(ctx, smallReads{bytes.NewReader(good), 32 << 10}, "test")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(good)
	if up.SHA256 != hex.EncodeToString(sum[:]) || up.Length != int64(len(good)) || up.Product != "acme" {
		t.Errorf("upload = %+v, want the bundle's sha256, length %d and manifest", up, len(good))
	}
	staged, err := os.ReadFile(p.uploadPath(up.ID))
	if err != nil || !bytes.Equal(staged, good) {
		t.Fatalf("staged file differs from the bundle sent (%v)", err)
	}
	os.Remove(p.uploadPath(up.ID))

	flipped := slices.Clone(good)
	flipped[3*pipeChunk+100] ^= 0xff // inside the stored payload: only the CRC tells
	tests := []struct {
		name, wantMsg string
		body          []byte
	}{
		{"truncated after four chunks", "truncated", good[:4*pipeChunk+7]},
		{"a byte changed in the fourth chunk", "corrupt gzip stream", flipped},
		{"data after the gzip stream", "after the end of the gzip stream", append(slices.Clone(good), "MZ"...)},
		{"not gzip", "gzip", append([]byte("PK\x03\x04"), good[4:]...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := p.Upload(ctx, smallReads{bytes.NewReader(tt.body), 32 << 10}, "test")
			var fe *fault.Error
			if !errors.As(err, &fe) || fe.Kind != fault.Invalid || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("got %v, want an invalid-bundle error with %q", err, tt.wantMsg)
			}
			if left, _ := os.ReadDir(p.UploadsDir); len(left) != 0 {
				t.Errorf("staging dir holds %d files after a refused upload", len(left))
			}
		})
	}

	// The body itself failing midway is a failed upload, not a bad bundle.
	broken := io.MultiReader(bytes.NewReader(good[:3*pipeChunk]), iotestErrReader{})
	if _, err := p.Upload(ctx, broken, "test"); err == nil || !strings.Contains(err.Error(), "connection reset") {
		t.Errorf("body failing midway: %v, want the body's error", err)
	}
	if left, _ := os.ReadDir(p.UploadsDir); len(left) != 0 {
		t.Errorf("staging dir holds %d files after a failed upload", len(left))
	}
}

type iotestErrReader struct{}

func (iotestErrReader) Read([]byte) (int, error) { return 0, errors.New("connection reset by peer") }

// TestStagedLogSaysWhereTheTimeWent: the "bundle staged" log line tells an
// operator how long receiving, the scan's tail after the last byte and the
// final fsync took, so a slow publish can be put down to one of them.
func TestStagedLogSaysWhereTheTimeWent(t *testing.T) {
	p := newBenchPublisher(t)
	var logged bytes.Buffer
	p.Log = slog.New(slog.NewTextHandler(&logged, nil))
	good := packed(t, map[string][]byte{"files/a.txt": []byte("a")})
	if _, err := p.Upload(context.Background(), bytes.NewReader(good), "test"); err != nil {
		t.Fatal(err)
	}
	line := logged.String()
	for _, k := range []string{"receive", "scan_tail", "fsync"} {
		if !regexp.MustCompile(`msg="bundle staged" .* ` + k + `=[0-9.]+(ns|µs|ms|s)\b`).MatchString(line) {
			t.Errorf("the staged log line has no %s duration: %s", k, line)
		}
	}
}
