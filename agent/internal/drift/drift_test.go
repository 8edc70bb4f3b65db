package drift

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/migrate"
)

func TestIgnored(t *testing.T) {
	tests := []struct {
		rel      string
		isDir    bool
		patterns []string
		want     bool
	}{
		{"app.log", false, []string{"*.log"}, true},
		{"logs/2026/app.log", false, []string{"*.log"}, true},
		{"bin/app.dll", false, []string{"*.log"}, false},
		{"logs", true, []string{"logs/"}, true},
		{"logs/a/b.txt", false, []string{"logs/"}, true},
		{"logs", false, []string{"logs/"}, false}, // a file named logs
		{"data/cache/x", false, []string{"data/cache/*"}, true},
		{"data/x", false, []string{"data/cache/*"}, false},
		{"cache/x", false, []string{"cache/"}, true},
		{"a/cache/x", false, []string{"cache/"}, true}, // no slash inside: any depth
		{"bin/app.dll", false, nil, false},
	}
	for _, tt := range tests {
		if got := Ignored(tt.rel, tt.isDir, tt.patterns); got != tt.want {
			t.Errorf("Ignored(%q, dir %v, %q) = %v, want %v", tt.rel, tt.isDir, tt.patterns, got, tt.want)
		}
	}
}

func TestValidateIgnore(t *testing.T) {
	for _, tt := range []struct {
		patterns []string
		wantErr  bool
	}{
		{[]string{"*.log", "logs/", "data/cache/*"}, false},
		{nil, false},
		{[]string{"[a-"}, true},
		{[]string{"/"}, true},
	} {
		if err := ValidateIgnore(tt.patterns); (err != nil) != tt.wantErr {
			t.Errorf("ValidateIgnore(%q) = %v, want error %v", tt.patterns, err, tt.wantErr)
		}
	}
}

// record writes files into a new release directory and returns it with
// the record of its files, as the agent makes it from the bundle.
func record(t *testing.T, files map[string]string) (string, []File) {
	t.Helper()
	dir := t.TempDir()
	var rec []File
	dirs := map[string]bool{}
	for p, content := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		sum, err := HashFile(full)
		if err != nil {
			t.Fatal(err)
		}
		rec = append(rec, File{Path: p, Size: int64(len(content)), Mode: 0o644, SHA256: sum})
		for d := filepath.ToSlash(filepath.Dir(p)); d != "."; d = filepath.ToSlash(filepath.Dir(d)) {
			dirs[d] = true
		}
	}
	for d := range dirs {
		rec = append(rec, File{Path: d, Mode: fs.ModeDir | 0o755})
	}
	slices.SortFunc(rec, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	return dir, rec
}

// Files names every change by hand, sorted by path, and only the topmost
// entry of a removed tree.
func TestFiles(t *testing.T) {
	release := map[string]string{
		"VERSION":         "1.0.0\n",
		"bin/app.dll":     "MZ app",
		"conf/app.conf":   "port = 1\n",
		"lib/a/one.txt":   "one",
		"lib/a/two.txt":   "two",
		"lib/data.txt":    "data",
		"logs/.gitignore": "*",
	}
	tests := []struct {
		name   string
		change func(t *testing.T, dir string)
		ignore []string
		want   []string
	}{
		{name: "intact", change: func(*testing.T, string) {}},
		{name: "modified, same size", change: func(t *testing.T, dir string) {
			write(t, filepath.Join(dir, "lib", "data.txt"), "DATA")
		}, want: []string{"modified: lib/data.txt"}},
		{name: "added file and directory", change: func(t *testing.T, dir string) {
			write(t, filepath.Join(dir, "bin", "hotfix.dll"), "MZ")
			write(t, filepath.Join(dir, "plugins", "x.dll"), "MZ")
		}, want: []string{"added: bin/hotfix.dll", "added: plugins/"}},
		{name: "removed tree", change: func(t *testing.T, dir string) {
			if err := os.RemoveAll(filepath.Join(dir, "lib", "a")); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(filepath.Join(dir, "conf", "app.conf")); err != nil {
				t.Fatal(err)
			}
		}, want: []string{"removed: conf/app.conf", "removed: lib/a/"}},
		{name: "ignored", change: func(t *testing.T, dir string) {
			write(t, filepath.Join(dir, "logs", "app.log"), "log")
			write(t, filepath.Join(dir, "app.log"), "log")
		}, ignore: []string{"*.log", "logs/"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, rec := record(t, release)
			tt.change(t, dir)
			got, err := Files(dir, rec, tt.ignore, nil)
			if err != nil || !slices.Equal(got, tt.want) {
				t.Errorf("Files = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	if runtime.GOOS != "windows" {
		dir, rec := record(t, release)
		if err := os.Chmod(filepath.Join(dir, "VERSION"), 0o600); err != nil {
			t.Fatal(err)
		}
		if got, _ := Files(dir, rec, nil, nil); !slices.Equal(got, []string{"modified: VERSION"}) {
			t.Errorf("Files after a chmod = %q", got)
		}
	}
}

// With Stamps, a file found intact is not hashed again while its size,
// time and mode hold; without, every file is.
func TestFilesStamps(t *testing.T) {
	dir, rec := record(t, map[string]string{"lib/data.txt": "data"})
	stamps := Stamps{}
	if got, err := Files(dir, rec, nil, stamps); err != nil || len(got) != 0 {
		t.Fatalf("Files = %q, %v", got, err)
	}
	p := filepath.Join(dir, "lib", "data.txt")
	fi, _ := os.Stat(p)
	write(t, p, "DATA")
	if err := os.Chtimes(p, time.Time{}, fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	if got, _ := Files(dir, rec, nil, stamps); len(got) != 0 {
		t.Errorf("Files with stamps hashed an unchanged stamp: %q", got)
	}
	if got, _ := Files(dir, rec, nil, nil); !slices.Equal(got, []string{"modified: lib/data.txt"}) {
		t.Errorf("Files without stamps = %q", got)
	}
}

func TestMigrations(t *testing.T) {
	m := func(name, up string) migrate.Migration {
		down := "SELECT 1;"
		mig, err := migrate.NewMigration(name, up, &down)
		if err != nil {
			t.Fatal(err)
		}
		return mig
	}
	rel := []migrate.Migration{m("0001_init", "CREATE TABLE a (x INT);"), m("0002_email", "ALTER TABLE a ADD y INT;")}
	applied := func(ms ...migrate.Migration) []migrate.Applied {
		var out []migrate.Applied
		for _, x := range ms {
			out = append(out, migrate.Applied{ID: x.ID, Name: x.Name, Checksum: x.Checksum})
		}
		return out
	}
	edited := applied(rel...)
	edited[1].Checksum = "f00d"
	renamed := applied(rel...)
	renamed[1].Name = "0002_mail"
	tests := []struct {
		name string
		recs []migrate.Applied
		want []string
	}{
		{"in step", applied(rel...), nil},
		{"edited", edited, []string{"migration 0002_email: checksum differs from release 1.0.0"}},
		{"renamed", renamed, []string{"migration 0002_mail: recorded as applied, but release 1.0.0's migration 2 is 0002_email"}},
		{"run by hand", applied(append(rel, m("0009_hotfix", "SELECT 2;"))...), []string{"migration 0009_hotfix: applied, but release 1.0.0 does not have it"}},
		{"reverted by hand", applied(rel[0]), []string{"migration 0002_email: in release 1.0.0, but not applied"}},
	}
	for _, tt := range tests {
		if got := Migrations("1.0.0", rel, tt.recs); !slices.Equal(got, tt.want) {
			t.Errorf("%s: Migrations = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestCapAndMessages(t *testing.T) {
	var d []string
	for i := range Max + 5 {
		d = append(d, fmt.Sprintf("added: f%03d", i))
	}
	c := Cap(d)
	if len(c) != Max || c[Max-1] != "... and 6 more changes" {
		t.Errorf("Cap: %d lines, last %q", len(c), c[len(c)-1])
	}
	if got := Cap(d[:3]); len(got) != 3 {
		t.Errorf("Cap of 3 lines = %q", got)
	}
	if got, want := Summary(d[:4]), "added: f000, added: f001, added: f002 and 1 more"; got != want {
		t.Errorf("Summary = %q, want %q", got, want)
	}
	err := &Error{Version: "1.0.0", Changes: d[:6]}
	if got := err.Error(); !strings.HasPrefix(got, "drift: added: f000, added: f001, added: f002, added: f003, added: f004 and 1 more (6 changes by hand to the running 1.0.0): have support review them") {
		t.Errorf("Error = %q", got)
	}
}

func write(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
