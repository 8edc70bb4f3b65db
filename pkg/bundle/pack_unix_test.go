//go:build unix

package bundle

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestPackRefusesSpecialFiles(t *testing.T) {
	for _, tt := range []struct {
		name string
		make func(t *testing.T, p string)
	}{
		{"fifo", func(t *testing.T, p string) {
			if err := syscall.Mkfifo(p, 0o644); err != nil {
				t.Skip(err)
			}
		}},
		{"socket", func(t *testing.T, p string) {
			l, err := net.Listen("unix", p)
			if err != nil {
				t.Skip(err)
			}
			t.Cleanup(func() { l.Close() })
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.MkdirAll(filepath.Join(dir, "files"), 0o755); err != nil {
				t.Fatal(err)
			}
			tt.make(t, filepath.Join(dir, "files", "special"))
			err := Pack(context.Background(), dir, io.Discard)
			if !errors.Is(err, ErrUnsupportedType) || !strings.Contains(err.Error(), `"files/special"`) {
				t.Errorf("Pack = %v, want ErrUnsupportedType naming files/special", err)
			}
		})
	}
}
