package migrate

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"

	"github.com/dropless/dropless/pkg/bundle"
)

// Migration is one migration of a bundle: NNNN_name.up.sql and, when the
// bundle has it, NNNN_name.down.sql.
type Migration struct {
	// ID is the number NNNN. Migrations apply in ascending ID order.
	ID int
	// Name is the file name without ".up.sql", e.g. "0001_create_users".
	// It is recorded with the migration, and must not change once released.
	Name string
	// Up is the SQL that applies the migration.
	Up string
	// Down is the SQL that reverts it; meaningful only when HasDown.
	Down string
	// HasDown says the bundle has NNNN_name.down.sql (an empty file is a
	// valid down migration that does nothing).
	HasDown bool
	// Checksum is the hex SHA-256 of Up's bytes. It is recorded with the
	// migration; a released migration whose checksum later differs from
	// the record is drift ([ErrDrift]).
	Checksum string
}

// UpFile returns the migration's up file name, e.g. "0001_init.up.sql".
func (m Migration) UpFile() string { return m.Name + ".up.sql" }

// DownFile returns the migration's down file name, e.g. "0001_init.down.sql".
func (m Migration) DownFile() string { return m.Name + ".down.sql" }

// NewMigration returns the migration named name (NNNN_name, without
// ".up.sql") with up and down SQL; down == nil means no down migration.
// Load builds migrations from files; NewMigration is for callers (and
// tests) that hold the SQL already.
func NewMigration(name string, up string, down *string) (Migration, error) {
	id, stem, _, err := parseName(name + ".up.sql")
	if err != nil {
		return Migration{}, err
	}
	m := Migration{ID: id, Name: stem, Up: up, Checksum: checksum(up)}
	if down != nil {
		m.Down, m.HasDown = *down, true
	}
	return m, nil
}

// nameRE splits a name that bundle.ValidateMigrationName accepted.
var nameRE = regexp.MustCompile(`^(([0-9]+)_[a-z0-9_]+)\.(up|down)\.sql$`)

// parseName parses a migration file name: NNNN_name.up.sql or
// NNNN_name.down.sql, as bundle.ValidateMigrationName defines it. It
// returns the number, the stem (NNNN_name) and whether it is an up file.
func parseName(name string) (id int, stem string, up bool, err error) {
	if err := bundle.ValidateMigrationName(name); err != nil {
		return 0, "", false, errorf(ErrInvalid, "%v", err)
	}
	m := nameRE.FindStringSubmatch(name)
	if m == nil { // unreachable while nameRE covers bundle's pattern
		return 0, "", false, errorf(ErrInvalid, "migration %q: not a valid migration name", name)
	}
	id, err = strconv.Atoi(m[2])
	if err != nil {
		return 0, "", false, errorf(ErrInvalid, "migration %q: number %s is too large", name, m[2])
	}
	return id, m[1], m[3] == "up", nil
}

func checksum(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// Load reads the migrations in dir, an unpacked bundle's migrations/
// directory, in ascending ID order. Every file must be named
// NNNN_name.up.sql or NNNN_name.down.sql ([bundle.ValidateMigrationName]);
// a down file needs its up file; two migrations may not share a number
// (0001_a and 00001_b both are number 1). A directory that does not exist
// holds no migrations (a bundle's migrations/ is optional). Errors match
// [ErrInvalid] and name the file.
func Load(dir string) ([]Migration, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, errorf(ErrInvalid, "read migrations: %w", err)
	}
	type pair struct {
		stem     string
		up, down *string
	}
	byID := map[int]*pair{}
	for _, e := range entries {
		name := e.Name()
		id, stem, isUp, err := parseName(name)
		if err != nil {
			return nil, err
		}
		p := filepath.Join(dir, name)
		fi, err := os.Stat(p) // follows a symlink; Unpack never makes one here
		if err != nil {
			return nil, errorf(ErrInvalid, "migration %s: %w", name, err)
		}
		if !fi.Mode().IsRegular() {
			return nil, errorf(ErrInvalid, "migration %s: not a regular file", name)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, errorf(ErrInvalid, "migration %s: %w", name, err)
		}
		text := string(data)
		pr := byID[id]
		if pr == nil {
			pr = &pair{stem: stem}
			byID[id] = pr
		} else if pr.stem != stem {
			return nil, errorf(ErrInvalid, "migration %s: number %d is used twice (also by %s); give each migration its own number", name, id, pr.stem)
		}
		if isUp {
			pr.up = &text
		} else {
			pr.down = &text
		}
	}
	ms := make([]Migration, 0, len(byID))
	for id, pr := range byID {
		if pr.up == nil {
			return nil, errorf(ErrInvalid, "migration %s.down.sql has no %s.up.sql; add the up migration or remove the down", pr.stem, pr.stem)
		}
		m := Migration{ID: id, Name: pr.stem, Up: *pr.up, Checksum: checksum(*pr.up)}
		if pr.down != nil {
			m.Down, m.HasDown = *pr.down, true
		}
		ms = append(ms, m)
	}
	slices.SortFunc(ms, func(a, b Migration) int { return a.ID - b.ID })
	return ms, nil
}

// checkSet checks a migration list given to Plan or Down: ascending unique
// IDs, names that parse to those IDs, checksums that match Up.
func checkSet(ms []Migration) error {
	for i, m := range ms {
		id, stem, _, err := parseName(m.Name + ".up.sql")
		if err != nil {
			return err
		}
		if id != m.ID || stem != m.Name {
			return errorf(ErrInvalid, "migration %s: ID %d does not match its name", m.Name, m.ID)
		}
		if i > 0 && ms[i-1].ID >= m.ID {
			return errorf(ErrInvalid, "migrations %s and %s: not in ascending, unique ID order (use Load)", ms[i-1].Name, m.Name)
		}
		if m.Checksum != checksum(m.Up) {
			return errorf(ErrInvalid, "migration %s: Checksum is not the SHA-256 of Up (use Load or NewMigration)", m.Name)
		}
	}
	return nil
}
