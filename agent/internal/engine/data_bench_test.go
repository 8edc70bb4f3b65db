//go:build unix

package engine

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// benchData makes 1000 files of 64 KiB (64 MiB) in 10 directories.
func benchData(b *testing.B) string {
	b.Helper()
	root := filepath.Join(b.TempDir(), "uploads")
	content := bytes.Repeat([]byte("0123456789abcdef"), 4096)
	for i := range 1000 {
		p := filepath.Join(root, fmt.Sprintf("d%d", i%10), fmt.Sprintf("f%d.bin", i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(p, content, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	return root
}

// BenchmarkDataSnapshot: what backing_up adds to the downtime for 64 MiB
// of uploads in 1000 files (a synced copy; a reflink on btrfs/XFS).
func BenchmarkDataSnapshot(b *testing.B) {
	root := benchData(b)
	snap := filepath.Join(b.TempDir(), "snap")
	b.SetBytes(64 << 20)
	for b.Loop() {
		if err := snapshotData(snap, []string{root}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDataHardLinks is the rejected alternative, for comparison: a
// tree of hard links (no data written; but it shares what the new version
// rewrites in place).
func BenchmarkDataHardLinks(b *testing.B) {
	root := benchData(b)
	snap := filepath.Join(b.TempDir(), "links")
	for b.Loop() {
		os.RemoveAll(snap)
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			if d.IsDir() {
				return os.MkdirAll(filepath.Join(snap, rel), 0o755)
			}
			return os.Link(p, filepath.Join(snap, rel))
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDataRestoreUnchanged: a rollback whose data the new version
// did not touch compares and rewrites nothing.
func BenchmarkDataRestoreUnchanged(b *testing.B) {
	root := benchData(b)
	snap := filepath.Join(b.TempDir(), "snap")
	if err := snapshotData(snap, []string{root}); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(64 << 20)
	for b.Loop() {
		if err := restoreData(snap); err != nil {
			b.Fatal(err)
		}
	}
}
