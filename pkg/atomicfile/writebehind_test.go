package atomicfile

import (
	"bytes"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// WriteBehind writes what it is given, in order, across many writeback
// steps, from a resumed offset and again after a truncation (an agent
// resuming a .part, then a server restarting the transfer from zero).
func TestWriteBehindContent(t *testing.T) {
	defer func(step, lag int64) { writeBehindStep, writeBehindLag = step, lag }(writeBehindStep, writeBehindLag)
	writeBehindStep, writeBehindLag = 256<<10, 1<<20
	data := make([]byte, writeBehindLag+3*writeBehindStep+12345)
	rand.NewChaCha8([32]byte{7}).Read(data)
	name := filepath.Join(t.TempDir(), "f.part")
	if err := os.WriteFile(name, data[:1000], 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Seek(1000, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	w := NewWriteBehind(f, 1000)
	write := func(from int) {
		t.Helper()
		for rest := data[from:]; len(rest) > 0; {
			n := min(len(rest), 100<<10+17) // not aligned to the steps
			if _, err := w.Write(rest[:n]); err != nil {
				t.Fatal(err)
			}
			rest = rest[n:]
		}
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("file holds %d bytes, not the %d written", len(got), len(data))
		}
	}
	write(1000)

	if err := f.Truncate(0); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	w.Reset(0)
	write(0)
}
