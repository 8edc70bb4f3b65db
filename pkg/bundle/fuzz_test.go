package bundle

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

var updateSeeds = flag.Bool("update-seeds", false, "rewrite the committed fuzz seed corpora under testdata/fuzz")

// fuzzLimits keep fuzzing fast.
var fuzzLimits = Limits{MaxEntries: 256, MaxEntrySize: 1 << 20, MaxTotalSize: 4 << 20}

// bundleSeeds are .tar.gz inputs for FuzzUnpack and FuzzScan.
func bundleSeeds(t testing.TB) map[string][]byte {
	seeds := map[string][]byte{
		"valid-packed":  packDir(t, sampleDir(t)),
		"valid-small":   validTarGz(),
		"not-gzip":      []byte("this is not a gzip'd tar\n"),
		"dot-slash":     tgz(te{name: "./", typ: '5'}, te{name: "./files/", typ: '5'}, te{name: "./files/a", body: "a"}),
		"hardlink":      tgz(te{name: "files/a", body: "shared"}, te{name: "files/b", typ: '1', link: "files/a"}),
		"symlink-chain": tgz(te{name: "files/d/f", body: "x"}, te{name: "files/dl", typ: '2', link: "d"}, te{name: "files/l", typ: '2', link: "dl/../d/f"}),
	}
	for _, r := range refusalTests() {
		seeds[strings.ReplaceAll(r.name, " ", "-")] = r.in
	}
	return seeds
}

// gunzip returns the content of a gzip stream, or nil.
func gunzip(data []byte) []byte {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		return nil
	}
	return out
}

// checkUnpack unpacks data into the sandbox and checks that nothing
// escaped, that a failure leaves nothing behind, and that Scan agrees. It
// removes the destination afterwards, so one sandbox serves many inputs.
func checkUnpack(t *testing.T, sb *sandbox, data []byte) {
	defer os.RemoveAll(sb.dest)
	info, err := Unpack(context.Background(), bytes.NewReader(data), sb.dest, fuzzLimits)
	sb.checkOutside(t)
	scanned, serr := Scan(bytes.NewReader(data), fuzzLimits)
	if err != nil {
		if _, statErr := os.Lstat(sb.dest); !errors.Is(statErr, fs.ErrNotExist) {
			t.Errorf("failed Unpack (%v) left the destination behind", err)
		}
		if serr == nil {
			t.Errorf("Scan accepted what Unpack refused: %v", err)
		}
		return
	}
	if serr != nil {
		t.Fatalf("Scan refused what Unpack accepted: %v", serr)
	}
	if !sameListing(scanned, info) {
		t.Errorf("Scan and Unpack disagree:\n%+v\n%+v", scanned.Files, info.Files)
	}
	files := filepath.Join(sb.dest, FilesDir)
	for _, f := range info.Files {
		p := filepath.Join(sb.dest, filepath.FromSlash(f.Path))
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatalf("listed entry missing: %v", err)
		}
		if fi.Mode() != f.Mode {
			t.Errorf("%s: mode %v on disk, %v listed", f.Path, fi.Mode(), f.Mode)
		}
		if f.Mode&fs.ModeSymlink == 0 {
			continue
		}
		real, err := filepath.EvalSymlinks(p)
		if err != nil {
			continue // dangling: cannot lead anywhere
		}
		rel, err := filepath.Rel(files, real)
		if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			t.Errorf("symlink %s resolves to %s, outside %s", f.Path, real, files)
		}
	}
	n := 0
	filepath.WalkDir(sb.dest, func(string, fs.DirEntry, error) error { n++; return nil })
	if n-1 != len(info.Files) {
		t.Errorf("%d entries on disk, %d listed", n-1, len(info.Files))
	}
}

func FuzzUnpack(f *testing.F) {
	for _, seed := range bundleSeeds(f) {
		f.Add(seed)
	}
	sb := newSandbox(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		checkUnpack(t, sb, data)
	})
}

// FuzzUnpackTar feeds gzip'd fuzzed tars to Unpack: mutating the
// uncompressed tar reaches the entry checks far more often than mutating
// compressed bytes does.
func FuzzUnpackTar(f *testing.F) {
	for _, seed := range bundleSeeds(f) {
		if raw := gunzip(seed); raw != nil {
			f.Add(raw)
		}
	}
	sb := newSandbox(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		checkUnpack(t, sb, gz(raw))
	})
}

func FuzzScan(f *testing.F) {
	for _, seed := range bundleSeeds(f) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cr := &countingReader{r: bytes.NewReader(data)}
		info, err := Scan(cr, fuzzLimits)
		if err != nil {
			if info != nil {
				t.Error("Info returned with an error")
			}
			return
		}
		if cr.n != len(data) || !cr.eof {
			t.Errorf("Scan accepted after reading %d of %d bytes", cr.n, len(data))
		}
		if info.TotalSize < 0 || !slices.IsSortedFunc(info.Files, func(a, b File) int { return strings.Compare(a.Path, b.Path) }) {
			t.Errorf("TotalSize %d, Files %q", info.TotalSize, paths(info.Files))
		}
	})
}

func FuzzParseManifest(f *testing.F) {
	for _, tt := range manifestTests {
		f.Add([]byte(tt.in))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseManifest(data)
		if err != nil {
			if !errors.Is(err, ErrBadManifest) || !strings.HasPrefix(err.Error(), ManifestName+": ") {
				t.Errorf("error %q does not match ErrBadManifest or name bundle.toml", err)
			}
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("parsed manifest does not validate: %v", err)
		}
		var buf bytes.Buffer
		if err := toml.NewEncoder(&buf).Encode(m); err != nil {
			t.Fatalf("encode: %v", err)
		}
		again, err := ParseManifest(buf.Bytes())
		if err != nil {
			if len(buf.Bytes()) > MaxManifestSize {
				return
			}
			t.Fatalf("re-parse of\n%s\nfailed: %v", buf.Bytes(), err)
		}
		if len(m.Health.Cmd) == 0 {
			m.Health.Cmd, again.Health.Cmd = nil, nil
		}
		if !reflect.DeepEqual(m, again) {
			t.Errorf("round trip changed the manifest:\n%+v\n%+v", m, again)
		}
	})
}

// TestWriteFuzzSeeds rewrites the committed seed corpora with
// `go test ./pkg/bundle -run TestWriteFuzzSeeds -update-seeds`.
func TestWriteFuzzSeeds(t *testing.T) {
	if !*updateSeeds {
		t.Skip("run with -update-seeds to rewrite testdata/fuzz")
	}
	all := bundleSeeds(t)
	bundles := map[string][]byte{}
	for _, name := range []string{"valid-packed", "valid-small", "not-gzip", "dot-slash", "hardlink", "symlink-chain",
		"dot-dot", "absolute-path", "symlink-escape", "symlink-escape-then-write-through", "symlink-escape-through-symlink",
		"write-through-symlink", "hardlink-outside", "char-device", "duplicate", "unknown-top-level"} {
		data, ok := all[name]
		if !ok {
			t.Fatalf("no seed %q", name)
		}
		bundles[name] = data
	}
	tars := map[string][]byte{}
	for name, data := range bundles {
		if name == "valid-packed" {
			continue // large once uncompressed; FuzzUnpackTar adds it with f.Add
		}
		if raw := gunzip(data); raw != nil {
			// Drop the end-of-archive blocks: archive/tar reads a clean
			// EOF as the end, and the seed files stay small.
			end := len(bytes.TrimRight(raw, "\x00"))
			tars[name] = raw[:min(len(raw), (end+511)/512*512)]
		}
	}
	manifests := map[string][]byte{}
	for _, tt := range manifestTests {
		if tt.name != "too large" {
			manifests[strings.ReplaceAll(tt.name, " ", "-")] = []byte(tt.in)
		}
	}
	for target, seeds := range map[string]map[string][]byte{
		"FuzzUnpack": bundles, "FuzzScan": bundles, "FuzzUnpackTar": tars, "FuzzParseManifest": manifests,
	} {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, data := range seeds {
			content := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data)
			if err := os.WriteFile(filepath.Join(dir, "seed-"+name), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}
