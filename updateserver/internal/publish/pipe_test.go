package publish

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"testing"
)

func TestAsyncPipeCopiesEverything(t *testing.T) {
	data := make([]byte, 5*pipeChunk+123)
	rand.Read(data)
	p := newAsyncPipe(4)
	got := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(p)
		got <- b
	}()
	// Odd-sized writes cross chunk boundaries.
	for rest := data; len(rest) > 0; {
		n := min(len(rest), 777_777)
		if _, err := p.Write(rest[:n]); err != nil {
			t.Fatal(err)
		}
		rest = rest[n:]
	}
	p.CloseWrite()
	if b := <-got; !bytes.Equal(b, data) {
		t.Fatalf("reader got %d bytes, want the %d written", len(b), len(data))
	}
}

func TestAsyncPipeReaderFailureStopsWriter(t *testing.T) {
	p := newAsyncPipe(1)
	boom := errors.New("boom")
	p.CloseRead(boom)
	big := make([]byte, 10*pipeChunk)
	if _, err := p.Write(big); !errors.Is(err, boom) {
		t.Fatalf("write after reader failed: %v, want boom", err)
	}
}
