package bundle

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestPackDeterministic(t *testing.T) {
	dir := sampleDir(t)
	a := packDir(t, dir)
	b := packDir(t, dir)
	if !bytes.Equal(a, b) {
		t.Fatal("packing the same directory twice gave different bytes")
	}

	// The same tree, written in another order, with other times, owners
	// and permission bits (as another umask would leave them).
	other := filepath.Join(t.TempDir(), "other")
	specs := sampleSpecs()
	slices.Reverse(specs)
	for i := range specs {
		switch specs[i].mode {
		case 0o755:
			specs[i].mode = 0o700 // still executable
		case 0:
			specs[i].mode = 0o600
		}
	}
	writeSpecs(t, other, specs)
	when := time.Date(2023, 5, 6, 7, 8, 9, 123456789, time.UTC)
	err := filepath.WalkDir(other, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if os.Geteuid() == 0 {
			if err := os.Lchown(p, 1234, 5678); err != nil {
				return err
			}
		}
		if d.Type()&fs.ModeSymlink == 0 {
			if d.IsDir() {
				if err := os.Chmod(p, 0o700); err != nil {
					return err
				}
			}
			return os.Chtimes(p, when, when)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if c := packDir(t, other); !bytes.Equal(a, c) {
		t.Fatal("packing a copy with other times, owners and modes gave different bytes")
	}
}

func TestPackHeaders(t *testing.T) {
	data := packDir(t, sampleDir(t))
	// Gzip header: magic, deflate, no flags (no name), mtime 0, OS unknown.
	if !bytes.Equal(data[:8], []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0}) || data[9] != 255 {
		t.Errorf("gzip header = % x, want no name, no mtime, OS 255", data[:10])
	}
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var names []string
	modes := make(map[string]int64)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, strings.TrimSuffix(hdr.Name, "/"))
		modes[hdr.Name] = hdr.Mode
		if !hdr.ModTime.Equal(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)) || !hdr.AccessTime.IsZero() || !hdr.ChangeTime.IsZero() {
			t.Errorf("%s: times %v %v %v", hdr.Name, hdr.ModTime, hdr.AccessTime, hdr.ChangeTime)
		}
		if hdr.Uid != 0 || hdr.Gid != 0 || hdr.Uname != "" || hdr.Gname != "" || len(hdr.PAXRecords) != 0 {
			t.Errorf("%s: owner %d:%d %q:%q pax %v", hdr.Name, hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname, hdr.PAXRecords)
		}
	}
	if !slices.IsSorted(names) {
		t.Errorf("entries not sorted: %q", names)
	}
	want := map[string]int64{
		"files/":                      0o755,
		"files/bin/app":               0o755,
		"files/etc/config.yml":        0o644,
		"files/lib/libx.so":           0o777,
		"hooks/pre-stop":              0o755,
		"hooks/post-start":            0o755, // 0644 on disk: hooks are always executable
		"migrations/0001_init.up.sql": 0o644,
	}
	for name, mode := range want {
		if modes[name] != mode {
			t.Errorf("%s: mode %o, want %o", name, modes[name], mode)
		}
	}
}

func TestPackRefuses(t *testing.T) {
	valid := []spec{{path: "files/a", content: "a"}}
	for _, tt := range []struct {
		name      string
		specs     []spec
		wantErr   error
		wantEntry string // named in the error
	}{
		{name: "missing files", specs: []spec{{path: "bundle.toml", content: ""}}, wantErr: ErrBadLayout, wantEntry: "files/"},
		{name: "unknown top-level", specs: append([]spec{{path: "src/main.go", content: "package main"}}, valid...), wantErr: ErrBadLayout, wantEntry: "src"},
		{name: "top-level file", specs: append([]spec{{path: "README.md", content: "hi"}}, valid...), wantErr: ErrBadLayout, wantEntry: "README.md"},
		{name: "files is a file", specs: []spec{{path: "files", content: "x"}}, wantErr: ErrBadLayout, wantEntry: "files"},
		{name: "files is a symlink", specs: []spec{{path: "real", dir: true}, {path: "files", link: "real"}}, wantErr: ErrBadLayout, wantEntry: "files"},
		{name: "absolute symlink", specs: append([]spec{{path: "files/passwd", link: "/etc/passwd"}}, valid...), wantErr: ErrUnsafePath, wantEntry: "files/passwd"},
		{name: "symlink out of bundle", specs: append([]spec{{path: "files/x/up", link: "../../../etc"}}, valid...), wantErr: ErrUnsafePath, wantEntry: "files/x/up"},
		{name: "symlink out of files", specs: append([]spec{{path: "files/hook", link: "../hooks/pre-stop"}, {path: "hooks/pre-stop", content: "#!/bin/sh"}}, valid...), wantErr: ErrUnsafePath, wantEntry: "files/hook"},
		{name: "symlink escape through symlink", specs: append([]spec{{path: "files/l1", link: "."}, {path: "files/l2", link: "l1/.."}}, valid...), wantErr: ErrUnsafePath, wantEntry: "files/l2"},
		{name: "symlink loop", specs: append([]spec{{path: "files/l1", link: "l2"}, {path: "files/l2", link: "l1"}}, valid...), wantErr: ErrUnsafePath, wantEntry: "files/l1"},
		{name: "symlink in hooks", specs: append([]spec{{path: "hooks/pre-stop", link: "../files/a"}}, valid...), wantErr: ErrBadLayout, wantEntry: "hooks/pre-stop"},
		{name: "invalid manifest", specs: append([]spec{{path: "bundle.toml", content: `version = "x.y"`}}, valid...), wantErr: ErrBadManifest, wantEntry: "bundle.toml"},
		{name: "manifest unknown key", specs: append([]spec{{path: "bundle.toml", content: `verison = "1.0"`}}, valid...), wantErr: ErrBadManifest, wantEntry: "verison"},
		{name: "manifest is a directory", specs: append([]spec{{path: "bundle.toml", dir: true}}, valid...), wantErr: ErrBadLayout, wantEntry: "bundle.toml"},
		{name: "bad migration name", specs: append([]spec{{path: "migrations/1_init.sql", content: ""}}, valid...), wantErr: ErrBadLayout, wantEntry: "migrations/1_init.sql"},
		{name: "migration in subdirectory", specs: append([]spec{{path: "migrations/v2/0001_a.up.sql", content: ""}}, valid...), wantErr: ErrBadLayout, wantEntry: "migrations/v2"},
		{name: "down without up", specs: append([]spec{{path: "migrations/0001_a.down.sql", content: ""}}, valid...), wantErr: ErrBadLayout, wantEntry: "migrations/0001_a.down.sql"},
		{name: "migration number twice", specs: append([]spec{{path: "migrations/0001_a.up.sql"}, {path: "migrations/00001_b.up.sql"}}, valid...), wantErr: ErrBadLayout, wantEntry: "migrations/0001_a.up.sql"},
		{name: "bad hook name", specs: append([]spec{{path: "hooks/pre_stop", content: ""}}, valid...), wantErr: ErrBadLayout, wantEntry: "hooks/pre_stop"},
		{name: "backslash in name", specs: append([]spec{{path: `files/a\b`, content: ""}}, valid...), wantErr: ErrUnsafePath, wantEntry: `files/a\\b`},
		{name: "names differ in case", specs: append([]spec{{path: "files/A", content: ""}}, valid...), wantErr: ErrUnsafePath, wantEntry: "files/a"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeSpecs(t, dir, tt.specs)
			var buf bytes.Buffer
			err := Pack(context.Background(), dir, &buf)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Pack = %v, want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantEntry) {
				t.Errorf("error %q does not name %q", err, tt.wantEntry)
			}
			if buf.Len() != 0 {
				t.Errorf("Pack wrote %d bytes before failing", buf.Len())
			}
		})
	}
}

func TestPackEmptyFiles(t *testing.T) {
	dir := t.TempDir()
	writeSpecs(t, dir, []spec{{path: "files", dir: true}})
	info, err := Scan(bytes.NewReader(packDir(t, dir)), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if got := paths(info.Files); !slices.Equal(got, []string{"files"}) || info.Manifest != nil {
		t.Errorf("Scan of an empty bundle = %q, manifest %v", got, info.Manifest)
	}
}

func TestPackMissingDir(t *testing.T) {
	err := Pack(context.Background(), filepath.Join(t.TempDir(), "nope"), io.Discard)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "nope") {
		t.Errorf("Pack of a missing directory = %v", err)
	}
}

func TestPackCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Pack(ctx, sampleDir(t), io.Discard); !errors.Is(err, context.Canceled) {
		t.Errorf("Pack with a cancelled context = %v", err)
	}
}

// bigSpecs is a bundle whose files span many compression blocks: one
// compressible (a repeated text with a counter), one incompressible.
func bigSpecs() []spec {
	var text strings.Builder
	for i := 0; text.Len() < 3*packBlockSize+12345; i++ {
		fmt.Fprintf(&text, "line %d of a log that compresses well\n", i)
	}
	noise := make([]byte, 2*packBlockSize+777)
	rand.NewChaCha8([32]byte{1}).Read(noise)
	return []spec{
		{path: "bundle.toml", content: "product = \"big\"\nversion = \"1.0.0\"\n"},
		{path: "files/a.log", content: text.String()},
		{path: "files/b.bin", content: string(noise)},
		{path: "files/c/small.txt", content: "small\n"},
	}
}

// Packing is parallel: the bytes must not depend on how many blocks are
// compressed at once, nor on the order or times of the files on disk, and
// any gunzip must read them back to the same content.
func TestPackDeterministicAcrossBlocksAndCores(t *testing.T) {
	specs := bigSpecs()
	one := filepath.Join(t.TempDir(), "one")
	writeSpecs(t, one, specs)
	other := filepath.Join(t.TempDir(), "other")
	rev := slices.Clone(specs)
	slices.Reverse(rev)
	writeSpecs(t, other, rev)
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	for _, s := range specs {
		if err := os.Chtimes(filepath.Join(other, filepath.FromSlash(s.path)), old, old); err != nil {
			t.Fatal(err)
		}
	}

	defer func(n int) { packBlocks = n }(packBlocks)
	var first []byte
	for _, c := range []struct {
		dir    string
		blocks int
	}{{one, 1}, {one, 2}, {other, 7}, {other, 1}} {
		packBlocks = c.blocks
		got := packDir(t, c.dir)
		if first == nil {
			first = got
			continue
		}
		if !bytes.Equal(first, got) {
			t.Fatalf("packing %s with %d blocks at once gave different bytes (%d, want %d)", filepath.Base(c.dir), c.blocks, len(got), len(first))
		}
	}

	// The standard library's gunzip reads it: one member, the content back.
	zr, err := gzip.NewReader(bytes.NewReader(first))
	if err != nil {
		t.Fatal(err)
	}
	zr.Multistream(false)
	tr := tar.NewReader(zr)
	want := map[string]string{}
	for _, s := range specs {
		want[s.path] = s.content
	}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != want[hdr.Name] {
			t.Errorf("%s: %d bytes back, want %d", hdr.Name, len(b), len(want[hdr.Name]))
		}
		delete(want, hdr.Name)
	}
	if _, err := io.Copy(io.Discard, zr); err != nil {
		t.Fatal(err)
	}
	if rest, _ := io.ReadAll(zr); len(rest) != 0 {
		t.Errorf("%d bytes after the gzip member", len(rest))
	}
	if len(want) != 0 {
		t.Errorf("missing from the pack: %v", want)
	}
	if _, err := Scan(bytes.NewReader(first), DefaultLimits()); err != nil {
		t.Errorf("Scan of the pack: %v", err)
	}
}

// BenchmarkPack packs a directory holding 64 MiB of incompressible data
// (the worst case for time) and 16 MiB of text.
func BenchmarkPack(b *testing.B) {
	dir := filepath.Join(b.TempDir(), "bundle")
	noise := make([]byte, 64<<20)
	rand.NewChaCha8([32]byte{2}).Read(noise)
	var text strings.Builder
	for i := 0; text.Len() < 16<<20; i++ {
		fmt.Fprintf(&text, "line %d of a log that compresses well\n", i)
	}
	writeSpecs(b, dir, []spec{
		{path: "bundle.toml", content: "product = \"bench\"\nversion = \"1.0.0\"\n"},
		{path: "files/noise.bin", content: string(noise)},
		{path: "files/app.log", content: text.String()},
	})
	b.SetBytes(int64(len(noise) + text.Len()))
	for b.Loop() {
		if err := Pack(context.Background(), dir, io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}
