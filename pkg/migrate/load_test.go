package migrate

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/dropless/dropless/pkg/bundle"
)

func TestLoad(t *testing.T) {
	cases := []struct {
		name  string
		files map[string]string
		want  []string // names in order, with "+down" when HasDown
		err   string   // substring of an ErrInvalid error
	}{
		{name: "empty", files: map[string]string{}},
		{name: "release", files: release2, want: []string{"0001_create_customers+down", "0002_add_email+down", "0003_orders+down", "0004_seed_vendor+down"}},
		{name: "up only and empty down", files: map[string]string{"0002_b.up.sql": "x", "0001_a.up.sql": "y", "0001_a.down.sql": ""},
			want: []string{"0001_a+down", "0002_b"}},
		{name: "numeric order", files: map[string]string{"0010_ten.up.sql": "", "0009_nine.up.sql": "", "10000_big.up.sql": ""},
			want: []string{"0009_nine", "0010_ten", "10000_big"}},
		{name: "down without up", files: map[string]string{"0001_a.down.sql": ""}, err: "0001_a.down.sql has no 0001_a.up.sql"},
		{name: "number used twice", files: map[string]string{"0001_a.up.sql": "", "00001_b.up.sql": ""}, err: "number 1 is used twice"},
		{name: "same number other name", files: map[string]string{"0001_a.up.sql": "", "0001_b.down.sql": ""}, err: "used twice"},
		{name: "bad name", files: map[string]string{"0001_a.up.sql": "", "README.md": ""}, err: `"README.md"`},
		{name: "uppercase", files: map[string]string{"0001_Users.up.sql": ""}, err: "0001_Users.up.sql"},
		{name: "short number", files: map[string]string{"001_a.up.sql": ""}, err: "001_a.up.sql"},
		{name: "huge number", files: map[string]string{"99999999999999999999_a.up.sql": ""}, err: "too large"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ms, err := Load(writeMigrations(t, c.files))
			if c.err != "" {
				if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("Load: %v, want ErrInvalid saying %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, m := range ms {
				n := m.Name
				if m.HasDown {
					n += "+down"
				}
				got = append(got, n)
				if m.Checksum != checksum(c.files[m.UpFile()]) || m.Up != c.files[m.UpFile()] || m.Down != c.files[m.DownFile()] {
					t.Errorf("%s: content or checksum wrong", m.Name)
				}
			}
			if strings.Join(got, " ") != strings.Join(c.want, " ") {
				t.Errorf("Load = %q, want %q", got, c.want)
			}
		})
	}
}

func TestLoadMissingDirAndSubdir(t *testing.T) {
	ms, err := Load(filepath.Join(t.TempDir(), "nope"))
	if err != nil || ms != nil {
		t.Fatalf("missing dir: %v, %v", ms, err)
	}
	dir := writeMigrations(t, map[string]string{"0001_a.up.sql": ""})
	if err := os.Mkdir(filepath.Join(dir, "0002_b.up.sql"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("subdirectory: %v", err)
	}
}

func TestCheckSet(t *testing.T) {
	good := load(t, release2)
	if err := checkSet(good); err != nil {
		t.Fatal(err)
	}
	swapped := []Migration{good[1], good[0]}
	tampered := append([]Migration(nil), good...)
	tampered[2].Up += " "
	wrongID := append([]Migration(nil), good...)
	wrongID[0].ID = 7
	for name, ms := range map[string][]Migration{"order": swapped, "checksum": tampered, "id": wrongID} {
		if err := checkSet(ms); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	down := "DROP TABLE x;"
	m, err := NewMigration("0007_x", "CREATE TABLE x (id INTEGER);", &down)
	if err != nil || m.ID != 7 || !m.HasDown || m.Checksum != checksum(m.Up) {
		t.Fatalf("NewMigration: %+v, %v", m, err)
	}
	if _, err := NewMigration("7_x", "", nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("NewMigration(7_x): %v", err)
	}
}

// FuzzParseName: parseName accepts exactly what bundle.ValidateMigrationName
// accepts (numbers that fit an int), and its parts rebuild the name.
func FuzzParseName(f *testing.F) {
	for _, s := range []string{"0001_init.up.sql", "0001_init.down.sql", "00001_a_b.up.sql", "001_a.up.sql",
		"0001_A.up.sql", "0001_.up.sql", "0001_a.sql", "99999999999999999999_a.up.sql", "0001_a.up.sql\n", "٠٠٠١_a.up.sql"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		id, stem, up, err := parseName(name)
		verr := bundle.ValidateMigrationName(name)
		if verr != nil {
			if err == nil {
				t.Fatalf("parseName(%q) accepted a name the bundle refuses", name)
			}
			return
		}
		if err != nil {
			if !strings.Contains(err.Error(), "too large") {
				t.Fatalf("parseName(%q): %v, but the bundle accepts it", name, err)
			}
			return
		}
		suffix := ".down.sql"
		if up {
			suffix = ".up.sql"
		}
		if stem+suffix != name {
			t.Fatalf("parseName(%q): stem %q, up %v do not rebuild the name", name, stem, up)
		}
		num, _, _ := strings.Cut(stem, "_")
		if n, err := strconv.Atoi(num); err != nil || n != id || id < 0 {
			t.Fatalf("parseName(%q): id %d, number %q", name, id, num)
		}
	})
}
