package bundle

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// spec is one file of a test directory.
type spec struct {
	path    string
	content string
	mode    fs.FileMode // 0 means 0644 for files
	link    string      // symlink target
	dir     bool
}

// writeSpecs creates specs under root.
func writeSpecs(t testing.TB, root string, specs []spec) {
	t.Helper()
	for _, s := range specs {
		p := filepath.Join(root, filepath.FromSlash(s.path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		switch {
		case s.dir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
		case s.link != "":
			if err := os.Symlink(s.link, p); err != nil {
				t.Fatal(err)
			}
		default:
			mode := s.mode
			if mode == 0 {
				mode = 0o644
			}
			if err := os.WriteFile(p, []byte(s.content), mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, mode); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// sampleSpecs is a bundle directory with every kind of content.
func sampleSpecs() []spec {
	return []spec{
		{path: "bundle.toml", content: "product = \"acme-erp\"\nversion = \"2.1.0\"\nupgrade_from = \">= 2.0, < 2.1\"\nnotes = \"Faster reports.\"\n\n[hooks]\ntimeout = \"2m\"\n\n[health]\nurl = \"http://127.0.0.1:9000/health\"\ntimeout = \"30s\"\n"},
		{path: "files/bin/app", content: "#!/bin/sh\necho app\n", mode: 0o755},
		{path: "files/etc/config.yml", content: "port: 9000\n"},
		{path: "files/lib/libx.so.1", content: strings.Repeat("\x7fELF binary ", 500)},
		{path: "files/lib/libx.so", link: "libx.so.1"},
		{path: "files/config", link: "etc/config.yml"},
		{path: "files/bin/lib", link: "../lib"},
		{path: "files/empty", dir: true},
		{path: "files/docs/README.txt", content: ""},
		{path: "migrations/0001_init.up.sql", content: "CREATE TABLE t (id INTEGER);\n"},
		{path: "migrations/0001_init.down.sql", content: "DROP TABLE t;\n"},
		{path: "migrations/0002_add_name.up.sql", content: "ALTER TABLE t ADD name TEXT;\n"},
		{path: "hooks/pre-stop", content: "#!/bin/sh\nexit 0\n", mode: 0o755},
		{path: "hooks/post-start", content: "#!/bin/sh\nexit 0\n"}, // not executable on disk: Pack makes it so
	}
}

// sampleDir writes the sample bundle directory and returns its path.
func sampleDir(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "bundle")
	writeSpecs(t, dir, sampleSpecs())
	return dir
}

// packDir packs dir and returns the bytes.
func packDir(t testing.TB, dir string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Pack(context.Background(), dir, &buf); err != nil {
		t.Fatalf("Pack: %v", err)
	}
	return buf.Bytes()
}

// te is one handcrafted tar entry.
type te struct {
	name string
	typ  byte   // tar.TypeReg when 0
	body string // content of a regular file
	link string // Linkname
	mode int64  // 0644 when 0
}

// rawTar builds an uncompressed tar from entries, as-is.
func rawTar(entries []te) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: e.mode}
		if hdr.Typeflag == 0 {
			hdr.Typeflag = tar.TypeReg
		}
		if hdr.Mode == 0 {
			hdr.Mode = 0o644
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			hdr = &tar.Header{Name: e.name, Typeflag: e.typ, PAXRecords: map[string]string{"comment": "0123abcd"}}
		}
		if hdr.Typeflag == tar.TypeReg {
			hdr.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			panic(err)
		}
		if hdr.Size > 0 {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				panic(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// gz compresses data.
func gz(data []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(data); err != nil {
		panic(err)
	}
	if err := zw.Close(); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// tgz builds a .tar.gz from entries.
func tgz(entries ...te) []byte { return gz(rawTar(entries)) }

// sandbox is a temporary directory with a destination for Unpack, an empty
// sibling directory and a file outside the destination, to check that
// nothing is written outside it.
type sandbox struct {
	root, dest, sibling, outside string
}

const outsideContent = "original content\n"

func newSandbox(t testing.TB) *sandbox {
	t.Helper()
	root := t.TempDir()
	s := &sandbox{
		root:    root,
		dest:    filepath.Join(root, "dest"),
		sibling: filepath.Join(root, "sibling"),
		outside: filepath.Join(root, "outside.txt"),
	}
	if err := os.Mkdir(s.sibling, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.outside, []byte(outsideContent), 0o644); err != nil {
		t.Fatal(err)
	}
	return s
}

// checkOutside fails t if anything outside dest was created or changed.
func (s *sandbox) checkOutside(t testing.TB) {
	t.Helper()
	names, err := os.ReadDir(s.root)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if n.Name() != "dest" && n.Name() != "sibling" && n.Name() != "outside.txt" {
			t.Errorf("Unpack wrote %s outside the destination", filepath.Join(s.root, n.Name()))
		}
	}
	if sib, err := os.ReadDir(s.sibling); err != nil || len(sib) != 0 {
		t.Errorf("sibling directory changed: %v entries, err %v", len(sib), err)
	}
	fi, err := os.Lstat(s.outside)
	if err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("outside file replaced: %v %v", fi, err)
	}
	if b, err := os.ReadFile(s.outside); err != nil || string(b) != outsideContent {
		t.Errorf("outside file modified: %q, %v", b, err)
	}
}

// treeOf describes the tree under dir: path -> "dir 0755", "file 0644 <content>",
// "link <target>".
func treeOf(t testing.TB, dir string) map[string]string {
	t.Helper()
	out := make(map[string]string)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		rel = filepath.ToSlash(rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case fi.IsDir():
			out[rel] = "dir " + fi.Mode().Perm().String()
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out[rel] = "link " + target
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[rel] = "file " + fi.Mode().Perm().String() + " " + string(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// paths returns the paths of files.
func paths(files []File) []string {
	var out []string
	for _, f := range files {
		out = append(out, f.Path)
	}
	return out
}

// sameListing reports whether two Infos list the same paths, sizes, modes
// and link targets.
func sameListing(a, b *Info) bool {
	return slices.EqualFunc(a.Files, b.Files, func(x, y File) bool {
		return x.Path == y.Path && x.Size == y.Size && x.Mode == y.Mode && x.LinkTarget == y.LinkTarget
	}) && slices.Equal(a.Migrations, b.Migrations) && slices.Equal(a.Hooks, b.Hooks) && a.TotalSize == b.TotalSize
}
