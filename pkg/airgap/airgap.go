// Package airgap is the air-gap file: what `updateserver offline export`
// writes and `updateagent apply-offline` reads, so that a site with no
// network path to the update server is upgraded from a file carried in by
// hand. It also holds the job report that travels back the other way
// (report.go).
//
// The file is an uncompressed tar (the bundles inside are gzip'd already):
//
//	airgap.json                     the manifest, always the first entry
//	metadata/1.root.json ...        the whole root chain, as the repository serves it
//	metadata/timestamp.json
//	metadata/N.snapshot.json
//	metadata/N.targets.json
//	targets/<product>/<sha256>.<name>  the bundle of each hop, named as consistent snapshots name them
//
// Nothing in the file is trusted because it is in the file: the agent
// serves metadata/ and targets/ to its own TUF client, which verifies them
// against the pinned root like any mirror. The manifest is a request (which
// hops, in which order) and a transport check (each entry's size and
// sha256, so that a file damaged on the way is named as such); Read refuses
// anything but the entries above, duplicates, links, oversized entries and
// names that could leave the directory it writes to.
package airgap

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Format is the manifest's format version this package writes and reads.
const Format = 1

// ManifestName is the first entry of every air-gap file.
const ManifestName = "airgap.json"

// Manifest describes an air-gap file. It is not signed: the agent uses it
// only to know which targets to ask its TUF client for, in which order.
type Manifest struct {
	Format  int    `json:"format"`
	Product string `json:"product"`
	// Version is the version the file upgrades to.
	Version string `json:"version"`
	// From is the installed version the hops were planned from ("" when
	// the file holds the target alone).
	From string `json:"from,omitempty"`
	// Hops are the releases to install in order; the last is Version.
	Hops    []Hop     `json:"hops"`
	Created time.Time `json:"created"`
	// Server is where the file was exported from, for people.
	Server string `json:"server,omitempty"`
	// Files lists every other entry with its size and sha256: a check of
	// the transport, not of trust.
	Files []File `json:"files"`
}

// Hop is one release to install.
type Hop struct {
	Version string `json:"version"`
	// Target is the TUF target path (e.g. acme-erp/acme-erp-2.0.0.tar.gz).
	Target string `json:"target"`
	Length int64  `json:"length"`
}

// File is one entry of the file besides the manifest.
type File struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Limits bound what Read accepts.
type Limits struct {
	MaxEntries   int   // entries, the manifest included
	MaxMetadata  int64 // one metadata file (and the manifest)
	MaxTotalSize int64 // the sum of all entries
}

// DefaultLimits: 10,000 entries, 8 MiB per metadata file (go-tuf accepts 5
// MB of targets metadata), 64 GiB in total.
func DefaultLimits() Limits {
	return Limits{MaxEntries: 10000, MaxMetadata: 8 << 20, MaxTotalSize: 64 << 30}
}

// ErrInvalid is matched (errors.Is) by every refusal of a file that is not
// a well-formed air-gap file: truncated, damaged, or built to attack the
// reader.
var ErrInvalid = errors.New("not a valid air-gap file")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

var (
	reMetadata  = regexp.MustCompile(`^metadata/(?:[0-9]{1,9}\.)?[A-Za-z0-9_-]{1,64}\.json$`)
	reComponent = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._+-]{0,199}$`)
)

// checkName says whether name may be an entry other than the manifest, and
// whether it is metadata.
func checkName(name string) (isMeta bool, err error) {
	if reMetadata.MatchString(name) {
		return true, nil
	}
	rest, ok := strings.CutPrefix(name, "targets/")
	if !ok {
		return false, invalid("entry %q is neither metadata/ nor targets/", name)
	}
	parts := strings.Split(rest, "/")
	if len(parts) > 8 {
		return false, invalid("entry %q is nested too deep", name)
	}
	for _, p := range parts {
		if !reComponent.MatchString(p) || strings.Contains(p, "..") {
			return false, invalid("entry %q has a path component %q that is not a plain file name", name, p)
		}
	}
	return false, nil
}

// Write writes an air-gap file to w: m (whose Files Write fills in) and
// every file under dir/metadata and dir/targets, in name order, with fixed
// times and modes so that the same input gives the same bytes.
func Write(w io.Writer, dir string, m Manifest) error {
	var names []string
	for _, top := range []string{"metadata", "targets"} {
		err := filepath.WalkDir(filepath.Join(dir, top), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			if !d.Type().IsRegular() {
				return fmt.Errorf("%s is not a regular file", p)
			}
			rel, err := filepath.Rel(dir, p)
			if err != nil {
				return err
			}
			names = append(names, filepath.ToSlash(rel))
			return nil
		})
		if err != nil {
			return err
		}
	}
	sort.Strings(names)
	m.Format = Format
	m.Files = nil
	for _, n := range names {
		if _, err := checkName(n); err != nil {
			return err
		}
		sum, size, err := hashFile(filepath.Join(dir, filepath.FromSlash(n)))
		if err != nil {
			return err
		}
		m.Files = append(m.Files, File{Name: n, Size: size, SHA256: sum})
	}
	mb, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	hdr := func(name string, size int64) *tar.Header {
		return &tar.Header{Name: name, Size: size, Mode: 0o644, Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
	}
	if err := tw.WriteHeader(hdr(ManifestName, int64(len(mb)))); err != nil {
		return err
	}
	if _, err := tw.Write(mb); err != nil {
		return err
	}
	for _, f := range m.Files {
		if err := tw.WriteHeader(hdr(f.Name, f.Size)); err != nil {
			return err
		}
		if err := copyFile(tw, filepath.Join(dir, filepath.FromSlash(f.Name)), f.Size); err != nil {
			return err
		}
	}
	return tw.Close()
}

func hashFile(p string) (string, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	return hex.EncodeToString(h.Sum(nil)), n, err
}

func copyFile(w io.Writer, p string, size int64) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := io.Copy(w, io.LimitReader(f, size))
	if err == nil && n != size {
		err = fmt.Errorf("%s changed while it was written", p)
	}
	return err
}

// Read reads an air-gap file from r and writes its entries under dir
// (which must exist and should be empty), checking each against the limits,
// the allowed names and the manifest's sizes and hashes. It returns the
// manifest once every entry the manifest lists was read intact. On error,
// dir may hold some entries; the caller removes it.
func Read(r io.Reader, dir string, lim Limits) (Manifest, error) {
	def := DefaultLimits()
	if lim.MaxEntries <= 0 {
		lim.MaxEntries = def.MaxEntries
	}
	if lim.MaxMetadata <= 0 {
		lim.MaxMetadata = def.MaxMetadata
	}
	if lim.MaxTotalSize <= 0 {
		lim.MaxTotalSize = def.MaxTotalSize
	}
	var m Manifest
	tr := tar.NewReader(r)
	first, err := tr.Next()
	if err == io.EOF {
		return m, invalid("the file is empty")
	}
	if err != nil {
		return m, invalid("the file is not a tar archive (%v)", err)
	}
	if first.Name != ManifestName || first.Typeflag != tar.TypeReg {
		return m, invalid("the first entry is %q, not %s: this is not an air-gap file made by updateserver offline export", first.Name, ManifestName)
	}
	if first.Size > lim.MaxMetadata || first.Size < 0 {
		return m, invalid("the manifest is %d bytes, more than the %d allowed", first.Size, lim.MaxMetadata)
	}
	mb, err := io.ReadAll(tr)
	if err != nil {
		return m, invalid("the file is truncated: the manifest ends early (%v)", err)
	}
	if err := json.Unmarshal(mb, &m); err != nil {
		return m, invalid("the manifest is not valid JSON: %v", err)
	}
	if err := m.validate(lim); err != nil {
		return Manifest{}, err
	}
	want := make(map[string]File, len(m.Files))
	for _, f := range m.Files {
		want[f.Name] = f
	}
	seen := map[string]bool{}
	var total int64
	for entries := 1; ; entries++ {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return Manifest{}, invalid("the file is truncated or damaged after %d entries (%v): copy it again", entries, err)
		}
		if entries >= lim.MaxEntries {
			return Manifest{}, invalid("more than %d entries", lim.MaxEntries)
		}
		if h.Typeflag != tar.TypeReg {
			return Manifest{}, invalid("entry %q is not a regular file (type %q)", h.Name, h.Typeflag)
		}
		f, ok := want[h.Name]
		switch {
		case seen[h.Name] || h.Name == ManifestName:
			return Manifest{}, invalid("entry %q appears twice", h.Name)
		case !ok:
			return Manifest{}, invalid("entry %q is not listed in the manifest", h.Name)
		case h.Size != f.Size:
			return Manifest{}, invalid("entry %q is %d bytes, the manifest says %d", h.Name, h.Size, f.Size)
		}
		seen[h.Name] = true
		total += h.Size
		if total > lim.MaxTotalSize {
			return Manifest{}, invalid("the entries add up to more than %d bytes", lim.MaxTotalSize)
		}
		if err := extract(tr, filepath.Join(dir, filepath.FromSlash(h.Name)), f); err != nil {
			return Manifest{}, err
		}
	}
	for _, f := range m.Files {
		if !seen[f.Name] {
			return Manifest{}, invalid("the file is truncated: %s is missing; copy it again", f.Name)
		}
	}
	return m, nil
}

func (m *Manifest) validate(lim Limits) error {
	if m.Format != Format {
		return invalid("manifest format %d; this agent reads format %d: export the file with a matching updateserver", m.Format, Format)
	}
	if m.Product == "" || m.Version == "" {
		return invalid("the manifest names no product or version")
	}
	if len(m.Hops) == 0 || len(m.Hops) > 100 {
		return invalid("the manifest lists %d hops (1 to 100 allowed)", len(m.Hops))
	}
	if m.Hops[len(m.Hops)-1].Version != m.Version {
		return invalid("the manifest's last hop is %s, not its version %s", m.Hops[len(m.Hops)-1].Version, m.Version)
	}
	if len(m.Files)+1 > lim.MaxEntries {
		return invalid("the manifest lists %d files, more than %d", len(m.Files), lim.MaxEntries-1)
	}
	names := map[string]bool{}
	for _, f := range m.Files {
		isMeta, err := checkName(f.Name)
		if err != nil {
			return err
		}
		if names[f.Name] {
			return invalid("the manifest lists %q twice", f.Name)
		}
		names[f.Name] = true
		if f.Size < 0 || (isMeta && f.Size > lim.MaxMetadata) || f.Size > lim.MaxTotalSize {
			return invalid("the manifest gives %q a size of %d bytes, outside the limits", f.Name, f.Size)
		}
		if b, err := hex.DecodeString(f.SHA256); err != nil || len(b) != sha256.Size {
			return invalid("the manifest gives %q no sha256", f.Name)
		}
	}
	// No name may be another's directory (a/b and a/b/c): extracting
	// one would fail on the other.
	for n := range names {
		for d := path.Dir(n); d != "." && d != "/"; d = path.Dir(d) {
			if names[d] {
				return invalid("the manifest lists %q and %q, a file inside a file", d, n)
			}
		}
	}
	return nil
}

// extract writes exactly f.Size bytes of r to dst, checking f.SHA256.
func extract(r io.Reader, dst string, f File) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(out, h), io.LimitReader(r, f.Size))
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return invalid("the file is truncated in %s (%v): copy it again", f.Name, err)
	}
	if n != f.Size {
		return invalid("the file is truncated in %s: %d of %d bytes", f.Name, n, f.Size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != strings.ToLower(f.SHA256) {
		return invalid("%s is damaged: its sha256 is %s, the manifest says %s; copy the file again (if it still fails, export it again)", f.Name, got, f.SHA256)
	}
	return nil
}
