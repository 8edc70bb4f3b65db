package publish

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dropless/dropless/updateserver/internal/fault"
)

// sendOver has UploadConn receive length bytes announced, of which the
// client sends body after the prefix already "read by the HTTP server"
// (the first pre bytes), on a real loopback TCP connection, then closes.
func sendOver(t *testing.T, p *Publisher, body []byte, pre int, length int64) (string, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return
		}
		defer c.Close()
		for rest := body[pre:]; len(rest) > 0; { // in uneven pieces
			k := min(len(rest), 300000)
			if _, err := c.Write(rest[:k]); err != nil {
				return
			}
			rest = rest[k:]
		}
		c.(*net.TCPConn).CloseWrite()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		c.Read(make([]byte, 1))
	}()
	conn, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	up, err := p.UploadConn(context.Background(), conn, body[:pre], length, time.Minute, "test")
	return up.SHA256, err
}

// TestUploadConn: a bundle received from a connection (spliced to the
// staged file on Linux) is staged whole with its sha256, whatever part of
// it the HTTP server had already read; a corrupt, truncated or overlong
// one is refused with the reason and leaves nothing staged.
func TestUploadConn(t *testing.T) {
	smallSyncSteps(t)
	p := newBenchPublisher(t)
	rng := rand.NewChaCha8([32]byte{9})
	payload := make([]byte, 5*pipeChunk+777)
	rng.Read(payload)
	good := packed(t, map[string][]byte{"files/payload.bin": payload})
	sum := sha256.Sum256(good)
	for _, pre := range []int{0, 1000} {
		got, err := sendOver(t, p, good, pre, int64(len(good)))
		if err != nil || got != hex.EncodeToString(sum[:]) {
			t.Fatalf("prefix %d: sha256 %q, %v; want %x", pre, got, err, sum)
		}
	}
	staged, _ := os.ReadDir(p.UploadsDir)
	if len(staged) != 2 {
		t.Fatalf("staged %d files, want 2", len(staged))
	}
	for _, e := range staged {
		b, err := os.ReadFile(p.UploadsDir + "/" + e.Name())
		if err != nil || !bytes.Equal(b, good) {
			t.Fatalf("staged %s differs from the bundle sent (%v)", e.Name(), err)
		}
		os.Remove(p.UploadsDir + "/" + e.Name())
	}

	flipped := slices.Clone(good)
	flipped[3*pipeChunk+100] ^= 0xff
	long := append(slices.Clone(good), "MZ"...)
	tests := []struct {
		name, wantMsg string
		body          []byte
		length        int64
	}{
		{"connection closed after four chunks", "ended after 4194311 of", good[:4*pipeChunk+7], int64(len(good))},
		{"a byte changed in the fourth chunk", "corrupt gzip stream", flipped, int64(len(flipped))},
		{"data after the gzip stream", "after the end of the gzip stream", long, int64(len(long))},
		{"not gzip", "gzip", append([]byte("PK\x03\x04"), good[4:]...), int64(len(good))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := sendOver(t, p, tt.body, 100, tt.length)
			var fe *fault.Error
			if !errors.As(err, &fe) || fe.Kind != fault.Invalid || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("got %v, want an invalid-upload error with %q", err, tt.wantMsg)
			}
			if left, _ := os.ReadDir(p.UploadsDir); len(left) != 0 {
				t.Errorf("staging dir holds %d files after a refused upload", len(left))
			}
		})
	}

	t.Run("larger than the server accepts", func(t *testing.T) {
		q := newBenchPublisher(t)
		q.MaxUpload = int64(len(good)) - 1
		_, err := sendOver(t, q, good, 0, int64(len(good)))
		var fe *fault.Error
		if !errors.As(err, &fe) || fe.Kind != fault.TooLarge {
			t.Errorf("got %v, want too large", err)
		}
	})
}

// TestFileFeedHash: the feed of the spliced path hands the scanner the
// file's bytes in order while its own goroutine hashes them, so the sum
// is the sha256 of exactly what the scanner read (every chunk, the last
// short one too, in order, whatever the sizes of the writes and reads);
// once the scanner gives up, the receiver is stopped with its error and
// the hash ends without the rest of the file.
func TestFileFeedHash(t *testing.T) {
	data := make([]byte, 3*pipeChunk+pipeChunk/2+17)
	rand.NewChaCha8([32]byte{3}).Read(data)
	feedFile := func(t *testing.T) (*fileFeed, *os.File) {
		f, err := os.CreateTemp(t.TempDir(), "feed")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		ff := newFileFeed()
		ff.f = f
		return ff, f
	}
	// write appends data to f in uneven steps, telling ff, until ff
	// refuses; it returns ff's error.
	write := func(ff *fileFeed, f *os.File) error {
		for off := 0; off < len(data); {
			k := min(len(data)-off, 300001)
			if _, err := f.WriteAt(data[off:off+k], int64(off)); err != nil {
				return err
			}
			off += k
			if err := ff.Wrote(int64(off)); err != nil {
				return err
			}
		}
		ff.CloseWrite()
		return nil
	}

	t.Run("whole file", func(t *testing.T) {
		ff, f := feedFile(t)
		go write(ff, f)
		var got bytes.Buffer
		buf := make([]byte, 100003)
		for {
			n, err := ff.Read(buf)
			got.Write(buf[:n])
			if err != nil {
				break
			}
		}
		ff.CloseRead(nil)
		want := sha256.Sum256(data)
		if !bytes.Equal(got.Bytes(), data) {
			t.Fatalf("read %d bytes, not the %d written", got.Len(), len(data))
		}
		if sum := ff.Sum(); !bytes.Equal(sum, want[:]) {
			t.Fatalf("sum %x, want %x", sum, want)
		}
	})

	t.Run("scanner gives up", func(t *testing.T) {
		ff, f := feedFile(t)
		wrote := make(chan error, 1)
		go func() { wrote <- write(ff, f) }()
		if _, err := io.ReadFull(ff, make([]byte, pipeChunk+1)); err != nil {
			t.Fatal(err)
		}
		stop := errors.New("not a bundle")
		ff.CloseRead(stop)
		if err := <-wrote; err != nil && !errors.Is(err, stop) {
			t.Fatalf("the receiver stopped with %v, want the scanner's error", err)
		}
		ff.Sum() // returns: the hasher ended
	})
}
