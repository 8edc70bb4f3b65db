package migrate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/dropless/dropless/pkg/atomicfile"
)

// backupFile is the name of a backup's description in its directory. It
// is written last, atomically: a directory without it holds no backup.
const backupFile = "backup.json"

// backupFormat is the version of backup.json.
const backupFormat = 1

// Backup is what a job needs to put the database back as it was before
// Up: made by DB.Backup, kept in a directory (the agent uses
// data_dir/backups/<job>), reloaded by OpenBackup after a restart.
type Backup struct {
	dir string
	m   backupMeta
}

// Dir returns the backup's directory.
func (b *Backup) Dir() string { return b.dir }

// backupMeta is backup.json.
type backupMeta struct {
	Format    int       `json:"format"`
	Driver    string    `json:"driver"`
	Target    string    `json:"target"`
	CreatedAt time.Time `json:"created_at"`
	// TableExisted says the record table existed; Applied is its content.
	TableExisted bool      `json:"table_existed"`
	Applied      []Applied `json:"applied"`
	// Pending and Extra are the plan the backup was made for.
	Pending []planned `json:"pending"`
	Extra   []planned `json:"extra"`

	// SQLite. Absent: the database file did not exist. File: the copy's
	// name in the directory; SHA256 and Size its content's; Perm the
	// database file's permissions; Verify how it was verified
	// (VerifyChecksum, VerifyFingerprint); Fingerprint, with
	// VerifyFingerprint, its fingerprint (equal to the database's when it
	// was made, and to the restored database's); JournalMode the
	// database's. A backup made before checksums has no SHA256, and a
	// Fingerprint.
	Absent bool `json:"absent,omitempty"`
	// CreatedDirs are the directories of the absent database's path
	// that did not exist either (outermost first): Up creates them, a
	// rollback removes them again.
	CreatedDirs []string `json:"created_dirs,omitempty"`
	File        string   `json:"file,omitempty"`
	SHA256      string   `json:"sha256,omitempty"`
	Size        int64    `json:"size,omitempty"`
	Perm        uint32   `json:"perm,omitempty"`
	Verify      string   `json:"verify,omitempty"`
	Fingerprint string   `json:"fingerprint,omitempty"`
	JournalMode string   `json:"journal_mode,omitempty"`

	// PostgreSQL: the schema description, compared after a rollback.
	Schema []string `json:"schema,omitempty"`
}

// planned identifies a migration of a plan.
type planned struct {
	ID       int    `json:"id"`
	Name     string `json:"name"`
	Checksum string `json:"checksum"`
}

func plannedOf(p *Plan) (pending, extra []planned) {
	for _, m := range p.Pending {
		pending = append(pending, planned{m.ID, m.Name, m.Checksum})
	}
	for _, a := range p.Extra {
		extra = append(extra, planned{a.ID, a.Name, a.Checksum})
	}
	return pending, extra
}

// check verifies that b was made by Backup of p on db.
func (b *Backup) check(db *DB, p *Plan) error {
	pending, extra := plannedOf(p)
	same := func(x, y Applied) bool { return x.ID == y.ID && x.Checksum == y.Checksum && x.Name == y.Name }
	if b.m.Driver != db.d.name() || b.m.Target != db.d.target() ||
		!slices.Equal(b.m.Pending, pending) || !slices.Equal(b.m.Extra, extra) ||
		!slices.EqualFunc(b.m.Applied, p.Applied, same) {
		return errorf(ErrStale, "the backup in %s was not made of this plan on this database; call Backup with the plan", b.dir)
	}
	return nil
}

// Backup prepares the rollback of plan p (from Plan on db) in dir, which
// it creates (0700); the agent passes data_dir/backups/<job>. The app must
// be stopped: the backup is checked against the live database.
//
// SQLite: a copy of the database file, made after folding the WAL into
// it (wal_checkpoint(TRUNCATE)) and under the database's write lock, so
// the file alone is the whole database; synced, and verified: its sha256,
// computed while copying, against a re-read of the copy, PRAGMA
// quick_check, and the same migration records as the database. With
// SetBackupVerify(VerifyFingerprint), also integrity_check and the same
// Fingerprint as the database (reading every row of both: slower). Its
// size is the database file's. A database that does not exist yet is
// noted as such (Rollback removes it).
//
// PostgreSQL: no copy; the job's migrations run in one transaction and a
// committed job is rolled back with its down migrations. The backup notes
// the records and the schema, so that Rollback knows what the job added
// and can check the result.
//
// Backup also checks that the records still equal p's (ErrStale). A
// backup.json describing the completed backup is written last: until
// then OpenBackup reports ErrNoBackup. Calling Backup again into the same
// directory replaces the backup.
func (db *DB) Backup(ctx context.Context, dir string, p *Plan) (*Backup, error) {
	if err := db.checkPlan(p); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	if err := os.Remove(filepath.Join(dir, backupFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("backup: %w", err)
	}
	recs, exists, err := db.records(ctx, db.pool)
	if err != nil {
		return nil, err
	}
	if !sameRecords(recs, p.Applied) {
		return nil, errorf(ErrStale, "the database's migration records changed since the plan; nothing was changed: plan again")
	}
	m := backupMeta{
		Format:       backupFormat,
		Driver:       db.d.name(),
		Target:       db.d.target(),
		CreatedAt:    time.Now().UTC(),
		TableExisted: exists,
		Applied:      recs,
	}
	m.Pending, m.Extra = plannedOf(p)
	if s, ok := db.d.(snapshotter); ok {
		if err := s.snapshot(ctx, db, dir, &m); err != nil {
			return nil, err
		}
	} else if ok, err := db.d.exists(); err != nil {
		return nil, err
	} else if ok {
		if m.Schema, err = db.d.schema(ctx, db.pool); err != nil {
			return nil, fmt.Errorf("backup: read schema: %w", err)
		}
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, backupFile), data, 0o600); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	return &Backup{dir: dir, m: m}, nil
}

// OpenBackup loads the backup Backup made in dir, e.g. after the agent
// restarted mid-job. ErrNoBackup means Backup did not complete there, so
// Up never ran and the database needs no rollback.
func OpenBackup(dir string) (*Backup, error) {
	data, err := os.ReadFile(filepath.Join(dir, backupFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errorf(ErrNoBackup, "no completed backup in %s", dir)
	}
	if err != nil {
		return nil, fmt.Errorf("open backup: %w", err)
	}
	b := &Backup{dir: dir}
	if err := json.Unmarshal(data, &b.m); err != nil {
		return nil, errorf(ErrVerify, "backup %s: %w", filepath.Join(dir, backupFile), err)
	}
	if b.m.Format != backupFormat {
		return nil, errorf(ErrUnsupported, "backup %s: format %d, this agent reads %d", filepath.Join(dir, backupFile), b.m.Format, backupFormat)
	}
	return b, nil
}
