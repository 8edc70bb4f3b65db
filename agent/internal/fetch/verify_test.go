package fetch

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestVerify: a downloaded target verifies; another file of the same
// length, a shorter one, a missing one and a directory do not; no request
// is made and nothing is removed.
func TestVerify(t *testing.T) {
	ctx := context.Background()
	repo, c, tg, data := downloadSetup(t, 10_000, nil)
	dir := t.TempDir()
	dst := filepath.Join(dir, LocalName(tg.Path))
	if _, err := c.Download(ctx, tg, dst); err != nil {
		t.Fatal(err)
	}
	reqs := len(repo.Requests())

	altered := bytes.Clone(data)
	altered[0] ^= 1
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name     string
		path     string
		wantKind Kind // "" for verified
	}{
		{"the downloaded target", dst, ""},
		{"altered bytes", write("altered", altered), ErrHashMismatch},
		{"shorter", write("short", data[:100]), ErrLengthMismatch},
		{"missing", filepath.Join(dir, "missing"), ErrNotFound},
		{"a directory", t.TempDir(), ErrLocal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := c.Verify(ctx, tg, tt.path)
			if tt.wantKind == "" {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			if !errors.Is(err, tt.wantKind) {
				t.Fatalf("Verify = %v, want %s", err, tt.wantKind)
			}
			if e, ok := errors.AsType[*Error](err); !ok || e.Target != tg.Path {
				t.Errorf("Verify = %v: want an *Error naming the target", err)
			}
			if _, serr := os.Stat(tt.path); tt.wantKind != ErrNotFound && serr != nil {
				t.Errorf("Verify removed %s: %v", tt.path, serr)
			}
		})
	}
	if n := len(repo.Requests()); n != reqs {
		t.Errorf("Verify made %d requests, want none", n-reqs)
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if err := c.Verify(canceled, tg, dst); !errors.Is(err, ErrCanceled) {
		t.Errorf("Verify with a canceled context = %v, want %s", err, ErrCanceled)
	}
}
