package bundle

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
)

// refusal is a handcrafted bundle that Scan and Unpack must refuse.
type refusal struct {
	name      string
	in        []byte
	lim       Limits
	wantErr   error
	wantEntry string // the entry the error must name
}

// refusalTests are shared by TestUnpackRefuses, TestScanRefuses and the
// fuzz seeds.
func refusalTests() []refusal {
	dir := te{name: "files/", typ: '5', mode: 0o755}
	file := func(name, body string) te { return te{name: name, body: body} }
	symlink := func(name, target string) te { return te{name: name, typ: '2', link: target} }
	hardlink := func(name, target string) te { return te{name: name, typ: '1', link: target} }
	return []refusal{
		{name: "absolute path", in: tgz(dir, file("/etc/passwd", "pwned")), wantErr: ErrUnsafePath, wantEntry: "/etc/passwd"},
		{name: "dot-dot", in: tgz(dir, file("../outside.txt", "pwned")), wantErr: ErrUnsafePath, wantEntry: "../outside.txt"},
		{name: "dot-dot into sibling", in: tgz(dir, file("../sibling/x", "pwned")), wantErr: ErrUnsafePath, wantEntry: "../sibling/x"},
		{name: "nested dot-dot", in: tgz(dir, file("files/../../outside.txt", "pwned")), wantErr: ErrUnsafePath, wantEntry: "files/../../outside.txt"},
		{name: "dot-slash dot-dot", in: tgz(dir, file("./../outside.txt", "pwned")), wantErr: ErrUnsafePath, wantEntry: "./../outside.txt"},
		{name: "backslash", in: tgz(dir, file(`files\..\..\outside.txt`, "pwned")), wantErr: ErrUnsafePath, wantEntry: `files\..\..\outside.txt`},
		{name: "drive letter", in: tgz(dir, file("C:/Windows/evil.dll", "pwned")), wantErr: ErrUnsafePath, wantEntry: "C:/Windows/evil.dll"},
		{name: "unclean path", in: tgz(dir, file("files//a", "x")), wantErr: ErrUnsafePath, wantEntry: "files//a"},
		{name: "root is a file", in: tgz(file(".", "x"), dir), wantErr: ErrUnsafePath, wantEntry: "."},
		{name: "absolute symlink", in: tgz(dir, symlink("files/passwd", "/etc/passwd")), wantErr: ErrUnsafePath, wantEntry: "files/passwd"},
		{name: "symlink escape", in: tgz(dir, symlink("files/evil", "../../outside.txt"), file("files/evil", "pwned")), wantErr: ErrUnsafePath, wantEntry: "files/evil"},
		{name: "symlink to new file outside", in: tgz(dir, symlink("files/new", "../../created-by-bundle"), file("files/new", "pwned")), wantErr: ErrUnsafePath, wantEntry: "files/new"},
		{name: "control character", in: tgz(dir, file("files/a\nb", "x")), wantErr: ErrUnsafePath, wantEntry: "files/a\nb"},
		{name: "symlink escape then write through", in: tgz(dir, symlink("files/up", "../.."), file("files/up/outside.txt", "pwned")), wantErr: ErrUnsafePath, wantEntry: "files/up"},
		{name: "symlink out of files", in: tgz(dir, te{name: "hooks/pre-stop", body: "#!/bin/sh"}, symlink("files/h", "../hooks/pre-stop")), wantErr: ErrUnsafePath, wantEntry: "files/h"},
		{name: "symlink escape through symlink", in: tgz(dir, symlink("files/l1", "."), symlink("files/l2", "l1/..")), wantErr: ErrUnsafePath, wantEntry: "files/l2"},
		{name: "symlink escape through later symlink", in: tgz(dir, symlink("files/l2", "s/l1/../.."), symlink("files/s/l1", "..")), wantErr: ErrUnsafePath, wantEntry: "files/l2"},
		{name: "symlink loop", in: tgz(dir, symlink("files/a", "b"), symlink("files/b", "a")), wantErr: ErrUnsafePath, wantEntry: "files/a"},
		{name: "write through symlink", in: tgz(dir, te{name: "files/sub/", typ: '5'}, symlink("files/ln", "sub"), file("files/ln/x", "via link")), wantErr: ErrUnsafePath, wantEntry: "files/ln/x"},
		{name: "write through symlink differing in case", in: tgz(dir, te{name: "files/sub/", typ: '5'}, symlink("files/Ln", "sub"), file("files/ln/x", "via link")), wantErr: ErrUnsafePath, wantEntry: "files/ln/x"},
		{name: "symlink in migrations", in: tgz(dir, symlink("migrations/0001_a.up.sql", "../files/a")), wantErr: ErrBadLayout, wantEntry: "migrations/0001_a.up.sql"},
		{name: "hardlink outside", in: tgz(dir, hardlink("files/h", "../outside.txt")), wantErr: ErrUnsafePath, wantEntry: "files/h"},
		{name: "hardlink absolute", in: tgz(dir, hardlink("files/h", "/etc/passwd")), wantErr: ErrUnsafePath, wantEntry: "files/h"},
		{name: "hardlink to unseen file", in: tgz(dir, hardlink("files/h", "files/later"), file("files/later", "x")), wantErr: ErrUnsafePath, wantEntry: "files/h"},
		{name: "hardlink to directory", in: tgz(dir, hardlink("files/h", "files")), wantErr: ErrUnsafePath, wantEntry: "files/h"},
		{name: "hardlink to symlink", in: tgz(dir, symlink("files/s", "a"), file("files/a", "x"), hardlink("files/h", "files/s")), wantErr: ErrUnsafePath, wantEntry: "files/h"},
		{name: "hardlink to manifest", in: tgz(te{name: "bundle.toml"}, dir, hardlink("files/h", "bundle.toml")), wantErr: ErrUnsafePath, wantEntry: "files/h"},
		{name: "hardlink through symlink", in: tgz(dir, te{name: "files/d/", typ: '5'}, file("files/d/a", "x"), symlink("files/s", "d"), hardlink("files/h", "files/s/a")), wantErr: ErrUnsafePath, wantEntry: "files/h"},
		{name: "char device", in: tgz(dir, te{name: "files/tty", typ: '3'}), wantErr: ErrUnsupportedType, wantEntry: "files/tty"},
		{name: "block device", in: tgz(dir, te{name: "files/sda", typ: '4'}), wantErr: ErrUnsupportedType, wantEntry: "files/sda"},
		{name: "fifo", in: tgz(dir, te{name: "files/pipe", typ: '6'}), wantErr: ErrUnsupportedType, wantEntry: "files/pipe"},
		{name: "entry too large", in: tgz(dir, file("files/big", "12345678901")), lim: Limits{MaxEntrySize: 10}, wantErr: ErrTooLarge, wantEntry: "files/big"},
		{name: "total too large", in: tgz(dir, file("files/a", "123456"), file("files/b", "123456")), lim: Limits{MaxTotalSize: 10}, wantErr: ErrTooLarge, wantEntry: "files/b"},
		{name: "too many entries", in: tgz(dir, file("files/a", ""), file("files/b", "")), lim: Limits{MaxEntries: 2}, wantErr: ErrTooLarge, wantEntry: "files/b"},
		{name: "duplicate", in: tgz(dir, file("files/a", "one"), file("files/a", "two")), wantErr: ErrUnsafePath, wantEntry: "files/a"},
		{name: "duplicate directory", in: tgz(dir, dir), wantErr: ErrUnsafePath, wantEntry: "files"},
		{name: "duplicate with dot-slash", in: tgz(dir, file("files/a", "one"), file("./files/a", "two")), wantErr: ErrUnsafePath, wantEntry: "files/a"},
		{name: "names differ in case", in: tgz(dir, file("files/README", "one"), file("files/readme", "two")), wantErr: ErrUnsafePath, wantEntry: "files/readme"},
		{name: "file under file", in: tgz(dir, file("files/a", "x"), file("files/a/b", "y")), wantErr: ErrUnsafePath, wantEntry: "files/a/b"},
		{name: "file over directory", in: tgz(dir, file("files/a/b", "x"), file("files/a", "y")), wantErr: ErrUnsafePath, wantEntry: "files/a"},
		{name: "unknown top-level", in: tgz(dir, file("etc/passwd", "x")), wantErr: ErrBadLayout, wantEntry: "etc/passwd"},
		{name: "missing files", in: tgz(te{name: "bundle.toml", body: `version = "1.0"`}), wantErr: ErrBadLayout, wantEntry: "files/"},
		{name: "empty archive", in: gz(nil), wantErr: ErrBadLayout, wantEntry: "files/"},
		{name: "bad migration name", in: tgz(dir, file("migrations/1_init.sql", "")), wantErr: ErrBadLayout, wantEntry: "migrations/1_init.sql"},
		{name: "down without up", in: tgz(dir, file("migrations/0003_x.down.sql", "")), wantErr: ErrBadLayout, wantEntry: "migrations/0003_x.down.sql"},
		{name: "bad hook name", in: tgz(dir, file("hooks/post-install", "")), wantErr: ErrBadLayout, wantEntry: "hooks/post-install"},
		{name: "directory in hooks", in: tgz(dir, te{name: "hooks/pre-stop/", typ: '5'}), wantErr: ErrBadLayout, wantEntry: "hooks/pre-stop"},
		{name: "manifest is a symlink", in: tgz(dir, symlink("bundle.toml", "files/x")), wantErr: ErrBadLayout, wantEntry: "bundle.toml"},
		{name: "files is a symlink", in: tgz(symlink("files", "/")), wantErr: ErrBadLayout, wantEntry: "files"},
		{name: "bad manifest", in: tgz(dir, file("bundle.toml", `product = "Acme"`)), wantErr: ErrBadManifest, wantEntry: "bundle.toml"},
		{name: "manifest too large", in: tgz(dir, file("bundle.toml", strings.Repeat("#", MaxManifestSize+1))), wantErr: ErrBadManifest, wantEntry: "bundle.toml"},
		{name: "not gzip", in: []byte("PK\x03\x04 this is a zip"), wantErr: ErrNotBundle, wantEntry: "expected a gzip'd tar (.tar.gz)"},
		{name: "empty input", in: nil, wantErr: ErrNotBundle, wantEntry: "empty"},
		{name: "gzip but not tar", in: gz(bytes.Repeat([]byte("hello, not a tar archive\n"), 100)), wantErr: ErrNotBundle, wantEntry: "tar"},
		{name: "uncompressed tar", in: rawTar([]te{dir}), wantErr: ErrNotBundle, wantEntry: "expected a gzip'd tar (.tar.gz)"},
	}
}

// validTarGz is a small valid bundle, used by several tests.
func validTarGz() []byte {
	return tgz(
		te{name: "bundle.toml", body: "product = \"acme\"\nversion = \"1.0.0\"\n"},
		te{name: "files/", typ: '5'},
		te{name: "files/a.txt", body: "hello\n"},
		te{name: "files/bin/run", body: "#!/bin/sh\n", mode: 0o700},
		te{name: "files/link", typ: '2', link: "a.txt"},
		te{name: "migrations/0001_init.up.sql", body: "CREATE TABLE t (id INTEGER);"},
		te{name: "hooks/post-start", body: "#!/bin/sh\n"},
	)
}

func checkRefusal(t *testing.T, err error, tt refusal) {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted, want %v", tt.wantErr)
	}
	if !errors.Is(err, tt.wantErr) {
		t.Errorf("error %q is not %v", err, tt.wantErr)
	}
	want := tt.wantEntry
	if tt.wantErr != ErrNotBundle {
		want = "bundle entry " + strconv.Quote(tt.wantEntry)
		if tt.wantErr == ErrBadManifest {
			want = tt.wantEntry
		}
	}
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not contain %q", err, want)
	}
}

func TestUnpackRefuses(t *testing.T) {
	for _, tt := range refusalTests() {
		t.Run(tt.name, func(t *testing.T) {
			for _, existing := range []bool{false, true} {
				sb := newSandbox(t)
				if existing {
					if err := os.Mkdir(sb.dest, 0o755); err != nil {
						t.Fatal(err)
					}
				}
				info, err := Unpack(context.Background(), bytes.NewReader(tt.in), sb.dest, tt.lim)
				if info != nil {
					t.Errorf("Unpack returned Info with an error")
				}
				checkRefusal(t, err, tt)
				sb.checkOutside(t)
				// A failed Unpack leaves nothing behind.
				names, derr := os.ReadDir(sb.dest)
				switch {
				case existing && (derr != nil || len(names) != 0):
					t.Errorf("destination not emptied after failure: %v, %v", names, derr)
				case !existing && !errors.Is(derr, fs.ErrNotExist):
					t.Errorf("destination created by Unpack not removed after failure: %v", derr)
				}
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	src := sampleDir(t)
	data := packDir(t, src)
	sb := newSandbox(t)
	info, err := Unpack(context.Background(), bytes.NewReader(data), sb.dest, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	sb.checkOutside(t)

	want := treeOf(t, src)
	want["hooks/post-start"] = strings.Replace(want["hooks/post-start"], "-rw-r--r--", "-rwxr-xr-x", 1)
	got := treeOf(t, sb.dest)
	if !maps.Equal(got, want) {
		for _, k := range slices.Sorted(maps.Keys(want)) {
			if got[k] != want[k] {
				t.Errorf("%s: got %q, want %q", k, got[k], want[k])
			}
		}
		for k := range got {
			if _, ok := want[k]; !ok {
				t.Errorf("%s: unexpected", k)
			}
		}
	}

	if info.Manifest == nil || info.Manifest.Product != "acme-erp" || info.Manifest.Version != "2.1.0" {
		t.Errorf("Manifest = %+v", info.Manifest)
	}
	if want := []string{"0001_init.up.sql", "0001_init.down.sql", "0002_add_name.up.sql"}; !slices.Equal(info.Migrations, want) {
		t.Errorf("Migrations = %q, want %q", info.Migrations, want)
	}
	if want := []string{"post-start", "pre-stop"}; !slices.Equal(info.Hooks, want) {
		t.Errorf("Hooks = %q, want %q", info.Hooks, want)
	}
	if got := paths(info.Files); !slices.IsSorted(got) || len(got) != len(want) {
		t.Errorf("Files = %q", got)
	}
	var total int64
	for _, f := range info.Files {
		p := filepath.Join(src, filepath.FromSlash(f.Path))
		switch {
		case f.Mode.IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(b)
			if f.SHA256 != hex.EncodeToString(sum[:]) || f.Size != int64(len(b)) {
				t.Errorf("%s: SHA256 %s size %d, want %x %d", f.Path, f.SHA256, f.Size, sum, len(b))
			}
			total += f.Size
		case f.Mode&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			if f.LinkTarget != target {
				t.Errorf("%s: LinkTarget %q, want %q", f.Path, f.LinkTarget, target)
			}
		}
	}
	if info.TotalSize != total {
		t.Errorf("TotalSize = %d, want %d", info.TotalSize, total)
	}

	scanned, err := Scan(bytes.NewReader(data), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if !sameListing(scanned, info) {
		t.Errorf("Scan and Unpack disagree:\nScan   %+v\nUnpack %+v", scanned.Files, info.Files)
	}
	for _, f := range scanned.Files {
		if f.SHA256 != "" {
			t.Errorf("Scan hashed %s", f.Path)
		}
	}

	// Packing the extracted tree gives the same bundle.
	if again := packDir(t, sb.dest); !bytes.Equal(again, data) {
		t.Error("Pack(Unpack(Pack(dir))) differs from Pack(dir)")
	}
}

func TestUnpackModes(t *testing.T) {
	in := tgz(
		te{name: "files/", typ: '5', mode: 0o700},
		te{name: "files/secret", body: "x", mode: 0o600},
		te{name: "files/setuid", body: "x", mode: 0o4755},
		te{name: "files/odd", body: "x", mode: 0o610},
		te{name: "hooks/pre-stop", body: "#!/bin/sh", mode: 0o644},
	)
	sb := newSandbox(t)
	if _, err := Unpack(context.Background(), bytes.NewReader(in), sb.dest, Limits{}); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]fs.FileMode{
		"files":          fs.ModeDir | 0o755,
		"files/secret":   0o644,
		"files/setuid":   0o755,
		"files/odd":      0o755,
		"hooks":          fs.ModeDir | 0o755,
		"hooks/pre-stop": 0o755,
	} {
		fi, err := os.Lstat(filepath.Join(sb.dest, p))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode(), want)
		}
	}
}

func TestUnpackAccepts(t *testing.T) {
	for _, tt := range []struct {
		name  string
		in    []byte
		want  []string // Info paths
		check func(t *testing.T, dest string, info *Info)
	}{
		{
			name: "dot-slash names as tar -C dir . writes them",
			in:   tgz(te{name: "./", typ: '5'}, te{name: "./bundle.toml", body: `version = "1.0"`}, te{name: "./files/", typ: '5'}, te{name: "./files/a", body: "a"}),
			want: []string{"bundle.toml", "files", "files/a"},
		},
		{
			name: "implicit directories",
			in:   tgz(te{name: "files/x/y/z", body: "deep"}),
			want: []string{"files", "files/x", "files/x/y", "files/x/y/z"},
		},
		{
			name: "explicit directory after its content",
			in:   tgz(te{name: "files/x/a", body: "a"}, te{name: "files/x/", typ: '5'}, te{name: "files/", typ: '5'}),
			want: []string{"files", "files/x", "files/x/a"},
		},
		{
			name: "hard link",
			in:   tgz(te{name: "files/a", body: "shared"}, te{name: "files/b", typ: '1', link: "files/a"}, te{name: "files/c", typ: '1', link: "./files/b"}),
			want: []string{"files", "files/a", "files/b", "files/c"},
			check: func(t *testing.T, dest string, info *Info) {
				for _, f := range info.Files[1:] {
					if f.Size != 6 || f.SHA256 != info.Files[1].SHA256 || !f.Mode.IsRegular() {
						t.Errorf("%+v", f)
					}
				}
				if b, err := os.ReadFile(filepath.Join(dest, "files/c")); err != nil || string(b) != "shared" {
					t.Errorf("files/c = %q, %v", b, err)
				}
			},
		},
		{
			name: "symlinks that stay inside",
			in: tgz(te{name: "files/d/f", body: "x"}, te{name: "files/l1", typ: '2', link: "d/f"}, te{name: "files/d/l2", typ: '2', link: "../l1"},
				te{name: "files/dl", typ: '2', link: "d"}, te{name: "files/l3", typ: '2', link: "dl/../d/./f"}, te{name: "files/self", typ: '2', link: "."},
				te{name: "files/dangling", typ: '2', link: "nothere/x"}),
			want: []string{"files", "files/d", "files/d/f", "files/d/l2", "files/dangling", "files/dl", "files/l1", "files/l3", "files/self"},
			check: func(t *testing.T, dest string, info *Info) {
				for _, l := range []string{"files/l1", "files/d/l2", "files/l3"} {
					if b, err := os.ReadFile(filepath.Join(dest, l)); err != nil || string(b) != "x" {
						t.Errorf("%s = %q, %v", l, b, err)
					}
				}
			},
		},
		{
			name: "git archive global header",
			in:   tgz(te{name: "pax_global_header", typ: 'g'}, te{name: "files/", typ: '5'}),
			want: []string{"files"},
		},
		{
			name: "zero padding after the archive",
			in:   gz(append(rawTar([]te{{name: "files/", typ: '5'}}), make([]byte, 10240)...)),
			want: []string{"files"},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sb := newSandbox(t)
			info, err := Unpack(context.Background(), bytes.NewReader(tt.in), sb.dest, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			sb.checkOutside(t)
			if got := paths(info.Files); !slices.Equal(got, tt.want) {
				t.Errorf("paths = %q, want %q", got, tt.want)
			}
			for _, p := range tt.want {
				if _, err := os.Lstat(filepath.Join(sb.dest, p)); err != nil {
					t.Errorf("not extracted: %v", err)
				}
			}
			if tt.check != nil {
				tt.check(t, sb.dest, info)
			}
			scanned, err := Scan(bytes.NewReader(tt.in), Limits{})
			if err != nil || !sameListing(scanned, info) {
				t.Errorf("Scan = %+v, %v; Unpack = %+v", scanned, err, info)
			}
		})
	}
}

func TestUnpackDestination(t *testing.T) {
	in := validTarGz()
	t.Run("not empty", func(t *testing.T) {
		sb := newSandbox(t)
		writeSpecs(t, sb.dest, []spec{{path: "keep", content: "mine"}})
		_, err := Unpack(context.Background(), bytes.NewReader(in), sb.dest, Limits{})
		if !errors.Is(err, ErrDestNotEmpty) || !strings.Contains(err.Error(), sb.dest) {
			t.Fatalf("Unpack = %v, want ErrDestNotEmpty naming the destination", err)
		}
		if b, _ := os.ReadFile(filepath.Join(sb.dest, "keep")); string(b) != "mine" {
			t.Error("existing file touched")
		}
	})
	t.Run("is a file", func(t *testing.T) {
		sb := newSandbox(t)
		if _, err := Unpack(context.Background(), bytes.NewReader(in), sb.outside, Limits{}); err == nil {
			t.Fatal("Unpack into a file succeeded")
		}
		sb.checkOutside(t)
	})
	t.Run("new nested", func(t *testing.T) {
		dest := filepath.Join(t.TempDir(), "a", "b")
		if _, err := Unpack(context.Background(), bytes.NewReader(in), dest, Limits{}); err != nil {
			t.Fatal(err)
		}
		if b, err := os.ReadFile(filepath.Join(dest, "files/a.txt")); err != nil || string(b) != "hello\n" {
			t.Errorf("files/a.txt = %q, %v", b, err)
		}
	})
	t.Run("symlink to empty directory", func(t *testing.T) {
		sb := newSandbox(t)
		real := filepath.Join(sb.root, "dest-real")
		if err := os.Mkdir(real, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("dest-real", sb.dest); err != nil {
			t.Fatal(err)
		}
		if _, err := Unpack(context.Background(), bytes.NewReader(in), sb.dest, Limits{}); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(real, "files/a.txt")); err != nil {
			t.Error(err)
		}
	})
}

func TestUnpackCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	sb := newSandbox(t)
	_, err := Unpack(ctx, bytes.NewReader(validTarGz()), sb.dest, Limits{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Unpack = %v, want context.Canceled", err)
	}
	if _, err := os.Stat(sb.dest); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("destination left behind: %v", err)
	}
}

// failingReader returns its data, then err.
type failingReader struct {
	data []byte
	err  error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestStreamErrors(t *testing.T) {
	valid := packDir(t, sampleDir(t))
	errUpload := errors.New("connection reset by client")
	for _, tt := range []struct {
		name    string
		in      io.Reader
		wantErr error
		notErr  error
		wantMsg string
	}{
		{name: "reader fails at start", in: iotest.ErrReader(errUpload), wantErr: errUpload, notErr: ErrNotBundle, wantMsg: "read bundle: connection reset"},
		{name: "reader fails midway", in: &failingReader{data: valid[:len(valid)/2], err: errUpload}, wantErr: errUpload, notErr: ErrNotBundle, wantMsg: "read bundle: connection reset"},
		{name: "truncated", in: bytes.NewReader(valid[:len(valid)/2]), wantErr: ErrNotBundle, wantMsg: "truncated"},
		{name: "truncated trailer", in: bytes.NewReader(valid[:len(valid)-4]), wantErr: ErrNotBundle, wantMsg: "not a bundle"},
		{name: "corrupt checksum", in: bytes.NewReader(append(slices.Clone(valid[:len(valid)-8]), 0, 0, 0, 0, 0, 0, 0, 0)), wantErr: ErrNotBundle, wantMsg: "corrupt"},
		// A deflate block of the reserved type 3 right after the header.
		{name: "corrupt deflate", in: bytes.NewReader(append(slices.Clone(valid[:10]), 0x07, 0, 0, 0, 0)), wantErr: ErrNotBundle, wantMsg: "corrupt gzip stream"},
		{name: "garbage after gzip", in: io.MultiReader(bytes.NewReader(valid), strings.NewReader("garbage")), wantErr: ErrNotBundle, wantMsg: "after the end of the gzip stream"},
		{name: "data after tar", in: bytes.NewReader(gz(append(rawTar([]te{{name: "files/", typ: '5'}}), "hidden"...))), wantErr: ErrNotBundle, wantMsg: "after the end of the tar archive"},
		{name: "second tar appended", in: io.MultiReader(bytes.NewReader(valid), bytes.NewReader(tgz(te{name: "files/evil", body: "x"}))), wantErr: ErrNotBundle, wantMsg: "after the end of the tar archive"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Scan(tt.in, Limits{})
			if !errors.Is(err, tt.wantErr) || (tt.notErr != nil && errors.Is(err, tt.notErr)) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("Scan = %v, want %v containing %q", err, tt.wantErr, tt.wantMsg)
			}
		})
	}
}

// TestSystemTar checks bundles made with `tar czf b.tar.gz -C dir .`.
func TestSystemTar(t *testing.T) {
	tarBin, err := exec.LookPath("tar")
	if err != nil {
		t.Skip("no tar command")
	}
	src := sampleDir(t)
	out := filepath.Join(t.TempDir(), "b.tar.gz")
	if b, err := exec.Command(tarBin, "czf", out, "-C", src, ".").CombinedOutput(); err != nil {
		t.Skipf("tar: %v: %s", err, b)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	scanned, err := Scan(bytes.NewReader(data), Limits{})
	if err != nil {
		t.Fatalf("Scan of a system tar bundle: %v", err)
	}
	sb := newSandbox(t)
	info, err := Unpack(context.Background(), bytes.NewReader(data), sb.dest, Limits{})
	if err != nil {
		t.Fatalf("Unpack of a system tar bundle: %v", err)
	}
	ours, err := Scan(bytes.NewReader(packDir(t, src)), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if !sameListing(scanned, ours) || !sameListing(info, ours) {
		t.Errorf("system tar bundle lists\n%+v\nPack's lists\n%+v", scanned.Files, ours.Files)
	}
}
