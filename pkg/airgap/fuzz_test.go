package airgap

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzRead: whatever the bytes, Read returns a manifest or an ErrInvalid
// (never panics), writes nothing outside its directory, and what it
// accepts has every listed entry in place with the listed size.
func FuzzRead(f *testing.F) {
	good := sampleFile(f)
	f.Add(good)
	f.Add(good[:len(good)/2])
	meta := `{"signed":{}}`
	f.Add(tarOf(entry{name: ManifestName, body: manifestWith(fileOf("metadata/timestamp.json", meta))}, entry{name: "metadata/timestamp.json", body: meta}))
	f.Add(tarOf(entry{name: ManifestName, body: manifestWith(fileOf("targets/../x", "x"))}, entry{name: "targets/../x", body: "x"}))
	f.Add(tarOf(entry{name: ManifestName, body: manifestWith(fileOf("targets/a", "x"))}, entry{name: "targets/a", body: "x"}, entry{name: "targets/a", body: "x"}))
	f.Add([]byte{})
	tmp := f.TempDir()
	f.Fuzz(func(t *testing.T, in []byte) {
		root, err := os.MkdirTemp(tmp, "run")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(root)
		dir := filepath.Join(root, "out")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		m, err := Read(bytes.NewReader(in), dir, Limits{MaxEntries: 64, MaxMetadata: 1 << 20, MaxTotalSize: 4 << 20})
		entries, _ := os.ReadDir(root)
		if len(entries) != 1 {
			t.Fatalf("Read wrote beside its directory: %v", entries)
		}
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error is not an ErrInvalid: %v", err)
			}
			return
		}
		for _, f := range m.Files {
			if strings.Contains(f.Name, "..") {
				t.Fatalf("accepted %q", f.Name)
			}
			fi, err := os.Stat(filepath.Join(dir, filepath.FromSlash(f.Name)))
			if err != nil || fi.Size() != f.Size {
				t.Fatalf("%s: %v", f.Name, err)
			}
		}
	})
}

// FuzzParseReport: a report either parses into something Validate
// accepts, or is refused with an error; never a panic.
func FuzzParseReport(f *testing.F) {
	b, _ := Sign(sampleReport(), CredentialKey("agc_x"))
	f.Add(b)
	f.Add([]byte(`{"report":{"format":1}}`))
	f.Add([]byte(`{"report":null,"signature":"hmac-sha256:zz"}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		sr, r, err := ParseReport(in)
		if err != nil {
			return
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("accepted a report that does not validate: %v", err)
		}
		_ = sr.Verify(CredentialKey("agc_x"))
	})
}
