package publish

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
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
