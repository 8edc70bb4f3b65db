package airgap

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
)

// sampleDir is a mirror directory: metadata and one target.
func sampleDir(t testing.TB) string {
	dir := t.TempDir()
	files := map[string]string{
		"metadata/1.root.json":     `{"signed":{"_type":"root"}}`,
		"metadata/timestamp.json":  `{"signed":{"_type":"timestamp"}}`,
		"metadata/2.snapshot.json": `{}`,
		"metadata/2.targets.json":  `{}`,
		"targets/acme-erp/" + strings.Repeat("ab", 32) + ".acme-erp-2.0.0.tar.gz": strings.Repeat("bundle bytes ", 1000),
	}
	for name, body := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func sampleManifest() Manifest {
	return Manifest{Product: "acme-erp", Version: "2.0.0", Hops: []Hop{{Version: "2.0.0", Target: "acme-erp/acme-erp-2.0.0.tar.gz"}}, Created: time.Unix(1e9, 0).UTC()}
}

func sampleFile(t testing.TB) []byte {
	var buf bytes.Buffer
	if err := Write(&buf, sampleDir(t), sampleManifest()); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// entry is a raw tar entry for hand-made files.
type entry struct {
	name string
	typ  byte
	body string
	size int64 // -1: len(body)
}

func tarOf(entries ...entry) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		size := int64(len(e.body))
		if e.size > 0 {
			size = e.size
		}
		tw.WriteHeader(&tar.Header{Name: e.name, Typeflag: typ, Size: size, Mode: 0o644, Linkname: "x"})
		tw.Write([]byte(e.body))
	}
	tw.Close()
	return buf.Bytes()
}

func manifestWith(files ...File) string {
	m := sampleManifest()
	m.Format = Format
	m.Files = files
	b, _ := json.Marshal(m)
	return string(b)
}

func fileOf(name, body string) File {
	s := sha256.Sum256([]byte(body))
	return File{Name: name, Size: int64(len(body)), SHA256: hex.EncodeToString(s[:])}
}

func TestRoundTrip(t *testing.T) {
	src := sampleDir(t)
	var a, b bytes.Buffer
	if err := Write(&a, src, sampleManifest()); err != nil {
		t.Fatal(err)
	}
	if err := Write(&b, src, sampleManifest()); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("the same input wrote different bytes")
	}
	out := t.TempDir()
	m, err := Read(bytes.NewReader(a.Bytes()), out, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if m.Product != "acme-erp" || m.Version != "2.0.0" || len(m.Files) != 5 {
		t.Errorf("manifest %+v", m)
	}
	for _, f := range m.Files {
		want, _ := os.ReadFile(filepath.Join(src, filepath.FromSlash(f.Name)))
		got, err := os.ReadFile(filepath.Join(out, filepath.FromSlash(f.Name)))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %v", f.Name, err)
		}
	}
}

// TestReadRefuses: every refusal is an ErrInvalid whose message names the
// problem.
func TestReadRefuses(t *testing.T) {
	good := sampleFile(t)
	damaged := bytes.Clone(good)
	damaged[len(damaged)-3000] ^= 0xff // inside the bundle, the last entry
	meta := `{"signed":{}}`
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "empty"},
		{"not tar", []byte("hello, this is not a tar file at all, and it is long enough to be read as a header........"), "not a tar"},
		{"truncated", good[:len(good)-4000], "truncated"},
		{"damaged bundle", damaged, "damaged"},
		{"manifest not first", tarOf(entry{name: "metadata/timestamp.json", body: meta}), "first entry"},
		{"manifest not json", tarOf(entry{name: ManifestName, body: "{"}), "not valid JSON"},
		{"manifest too big", tarOf(entry{name: ManifestName, body: "x", size: 9 << 20}), "more than"},
		{"duplicate entry", tarOf(entry{name: ManifestName, body: manifestWith(fileOf("metadata/timestamp.json", meta))},
			entry{name: "metadata/timestamp.json", body: meta}, entry{name: "metadata/timestamp.json", body: meta}), "twice"},
		{"manifest twice", tarOf(entry{name: ManifestName, body: manifestWith()}, entry{name: ManifestName, body: manifestWith()}), "twice"},
		{"unlisted entry", tarOf(entry{name: ManifestName, body: manifestWith()}, entry{name: "metadata/timestamp.json", body: meta}), "not listed"},
		{"size differs", tarOf(entry{name: ManifestName, body: manifestWith(File{Name: "metadata/timestamp.json", Size: 3, SHA256: strings.Repeat("0", 64)})},
			entry{name: "metadata/timestamp.json", body: meta}), "the manifest says 3"},
		{"dot dot", tarOf(entry{name: ManifestName, body: manifestWith(fileOf("targets/../../etc/passwd", "x"))}), "not a plain file name"},
		{"absolute", tarOf(entry{name: ManifestName, body: manifestWith(fileOf("/etc/passwd", "x"))}), "neither"},
		{"other top dir", tarOf(entry{name: ManifestName, body: manifestWith(fileOf("files/x", "x"))}), "neither"},
		{"symlink", tarOf(entry{name: ManifestName, body: manifestWith(fileOf("targets/a/l", ""))}, entry{name: "targets/a/l", typ: tar.TypeSymlink}), "not a regular file"},
		{"file inside a file", tarOf(entry{name: ManifestName, body: manifestWith(fileOf("targets/a", "x"), fileOf("targets/a/b", "y"))}), "file inside a file"},
		{"metadata too big", tarOf(entry{name: ManifestName, body: manifestWith(File{Name: "metadata/targets.json", Size: 9 << 20, SHA256: strings.Repeat("0", 64)})}), "outside the limits"},
		{"no hops", tarOf(entry{name: ManifestName, body: `{"format":1,"product":"p","version":"1.0.0","hops":[],"files":[]}`}), "hops"},
		{"other format", tarOf(entry{name: ManifestName, body: `{"format":7}`}), "format 7"},
		{"missing entry", tarOf(entry{name: ManifestName, body: manifestWith(fileOf("metadata/timestamp.json", meta))}), "missing"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Read(bytes.NewReader(tc.in), t.TempDir(), Limits{})
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("got %v, want an ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
		})
	}
}

func TestReadLimits(t *testing.T) {
	_, err := Read(bytes.NewReader(sampleFile(t)), t.TempDir(), Limits{MaxTotalSize: 1000})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "limits") {
		t.Fatalf("got %v", err)
	}
	_, err = Read(bytes.NewReader(sampleFile(t)), t.TempDir(), Limits{MaxEntries: 3})
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("got %v", err)
	}
}

func sampleReport() Report {
	at := time.Date(2026, 11, 27, 1, 0, 0, 0, time.UTC)
	id := JobIDPrefix + "1"
	return Report{Site: "acme-prod", Client: "acme", Product: "acme-erp", InstalledVersion: "2.0.0", WrittenAt: at,
		Jobs: []ReportJob{{ID: id, From: "1.0.0", To: "2.0.0", Target: "acme-erp/acme-erp-2.0.0.tar.gz", Result: protocol.ResultSucceeded,
			Events: []protocol.Event{{JobID: id, Seq: 1, State: protocol.StateDownloading, At: at}, {JobID: id, Seq: 2, State: protocol.StateCommitted, At: at}}}}}
}

func TestReportSignature(t *testing.T) {
	key := CredentialKey("agc_secret")
	b, err := Sign(sampleReport(), key)
	if err != nil {
		t.Fatal(err)
	}
	sr, rep, err := ParseReport(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := sr.Verify(key); err != nil {
		t.Errorf("verify: %v", err)
	}
	if rep.InstalledVersion != "2.0.0" || len(rep.Jobs) != 1 {
		t.Errorf("report %+v", rep)
	}
	// Re-indented on the way: still verifies.
	var compact bytes.Buffer
	json.Compact(&compact, b)
	if sr2, _, err := ParseReport(compact.Bytes()); err != nil || sr2.Verify(key) != nil {
		t.Errorf("compacted: %v %v", err, sr2.Verify(key))
	}
	if err := sr.Verify(CredentialKey("agc_other")); !errors.Is(err, ErrSignature) {
		t.Errorf("another site's key: %v", err)
	}
	tampered := bytes.Replace(b, []byte(`"installed_version": "2.0.0"`), []byte(`"installed_version": "9.0.0"`), 1)
	if bytes.Equal(tampered, b) {
		t.Fatal("nothing tampered")
	}
	if sr, _, err := ParseReport(tampered); err != nil || !errors.Is(sr.Verify(key), ErrSignature) {
		t.Errorf("tampered: %v %v", err, sr.Verify(key))
	}
	unsigned, _ := Sign(sampleReport(), "")
	if sr, _, _ := ParseReport(unsigned); !errors.Is(sr.Verify(key), ErrSignature) {
		t.Error("an unsigned report verified")
	}
}

func TestParseReportRefuses(t *testing.T) {
	edit := func(f func(r *Report)) []byte {
		r := sampleReport()
		f(&r)
		b, _ := Sign(r, "k")
		return b
	}
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"not json", []byte("nope"), "not a report"},
		{"no report", []byte(`{}`), "no report"},
		{"no site", edit(func(r *Report) { r.Site = "" }), "no site"},
		{"no jobs", edit(func(r *Report) { r.Jobs = nil }), "0 jobs"},
		{"online job id", edit(func(r *Report) { r.Jobs[0].ID = "job-1" }), "not the ID of an offline job"},
		{"job twice", edit(func(r *Report) { r.Jobs = append(r.Jobs, r.Jobs[0]) }), "twice"},
		{"unfinished", edit(func(r *Report) { r.Jobs[0].Result = protocol.ResultRunning }), "has ended"},
		{"event of another job", edit(func(r *Report) { r.Jobs[0].Events[0].JobID = JobIDPrefix + "2" }), "is of job"},
		{"bad state", edit(func(r *Report) { r.Jobs[0].Events[0].State = "hacking" }), "not an agent state"},
		{"bad version", edit(func(r *Report) { r.InstalledVersion = "latest" }), "installed_version"},
		{"too big", bytes.Repeat([]byte(" "), MaxReportBytes+1), "more than"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := ParseReport(tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}
