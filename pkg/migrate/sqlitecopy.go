package migrate

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/dropless/dropless/pkg/atomicfile"
)

// How Backup and Rollback verify a SQLite copy (DB.SetBackupVerify; the
// agent's [database] backup_verify).
const (
	// VerifyChecksum, the default: the database file's sha256, computed
	// while it is copied, and PRAGMA quick_check of the same bytes, run
	// meanwhile. A restore hashes the backup as it copies it back and
	// puts it in place only if its sha256 is the one recorded. Each costs
	// about a file copy.
	VerifyChecksum = "checksum"
	// VerifyFingerprint adds, for the paranoid, PRAGMA integrity_check and
	// a Fingerprint of every row, of the database and of the copy (and of
	// the restored database): several times the cost of a file copy.
	VerifyFingerprint = "fingerprint"
)

// SetBackupVerify chooses how Backup verifies a SQLite copy:
// VerifyChecksum ("" means it) or VerifyFingerprint. The backup records
// the choice; Rollback verifies as the backup says. PostgreSQL backups
// copy nothing: the setting does not change them.
func (db *DB) SetBackupVerify(mode string) error {
	switch mode {
	case "", VerifyChecksum, VerifyFingerprint:
		db.verify = mode
		return nil
	}
	return errorf(ErrUnsupported, "backup verify %q: use %s or %s", mode, VerifyChecksum, VerifyFingerprint)
}

// hashBufSize is the size of the hash's reads.
const hashBufSize = 4 << 20

// copyVerified copies src to a new file dst (perm) and syncs it, and
// hashes src in parallel with the copy: the kernel copies
// (copy_file_range, like cp) while a goroutine hashes src on the other
// core, and check (SQLite's checks) runs meanwhile. Each byte is read
// once by the copy and once by the hash, both from the page cache when
// the file is in it; the copy is not read back: its pages, fresh in the
// page cache, would only show the kernel's own copy again (what is on the
// disk is checked when it is read: a restore hashes the backup).
//
// It returns the sha256 of src and the size copied. When want (src's
// sha256 as recorded) is given and differs, it returns an ErrVerify error:
// src is damaged. A copy whose size differs from what was hashed is an
// error too (src changed during the copy). The caller removes dst on
// error.
func copyVerified(src, dst string, perm fs.FileMode, want string, check func() error) (sum string, n int64, err error) {
	in, err := os.Open(src)
	if err != nil {
		return "", 0, err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return "", 0, err
	}
	defer out.Close()

	var (
		wg                sync.WaitGroup
		hashed            int64
		hashErr, checkErr error
	)
	wg.Add(2)
	go func() { defer wg.Done(); sum, hashed, hashErr = hashFile(src) }()
	go func() { defer wg.Done(); checkErr = check() }()
	// *os.File to *os.File: copy_file_range.
	n, copyErr := io.Copy(out, in)
	if copyErr == nil {
		copyErr = out.Sync()
	}
	wg.Wait()
	if err := errors.Join(copyErr, hashErr); err != nil {
		return "", n, err
	}
	if hashed != n {
		return "", n, fmt.Errorf("%s changed while it was copied (%d bytes copied, %d hashed)", src, n, hashed)
	}
	if want != "" && sum != want {
		return sum, n, errorf(ErrVerify, "its sha256 is %.12s, %.12s was recorded", sum, want)
	}
	return sum, n, checkErr
}

// hashFile returns the sha256 of a file and its length.
func hashFile(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.CopyBuffer(h, f, make([]byte, hashBufSize))
	if err != nil {
		return "", n, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// sqliteReadMapped is the query of a read-only connection that reads the
// file through a memory map (mmap_size, up to SQLite's limit of about
// 2 GiB; beyond, and where mapping fails, by reads): PRAGMA quick_check
// then reads each page in place instead of copying it in by a system call
// (1 GiB of blobs: 0.1 to 0.6 s of CPU instead of 0.9 s). Only for files that nothing
// writes while they are mapped: a backup's copy, or the database under
// the backup's write lock.
const sqliteReadMapped = "mode=ro&_pragma=mmap_size(2147418112)"

// sqliteOpenCopy opens a database file that nothing else uses, read-only
// and without locks or -wal/-shm files (immutable), for checking a copy.
func sqliteOpenCopy(path string) (*sql.DB, error) {
	pool, err := sql.Open("sqlite", sqliteURI(path, sqliteReadMapped+"&immutable=1"))
	if err != nil {
		return nil, err
	}
	pool.SetMaxOpenConns(1)
	return pool, nil
}

// sqliteQuickCheck runs PRAGMA quick_check (integrity_check when full).
func sqliteQuickCheck(ctx context.Context, q querier, full bool) error {
	pragma := "quick_check"
	if full {
		pragma = "integrity_check"
	}
	res, err := queryStrings(ctx, q, "PRAGMA main."+pragma+"(20)")
	if err != nil {
		return err
	}
	if len(res) == 1 && res[0] == "ok" {
		return nil
	}
	return fmt.Errorf("%s: %s", pragma, strings.Join(res, "; "))
}

// checkCopy verifies a database copy: quick_check (integrity_check when
// want, a fingerprint, is given, and then a fingerprint equal to want);
// it returns the copy's migration records.
func (d *sqliteDialect) checkCopy(ctx context.Context, path, want string) ([]Applied, error) {
	pool, err := sqliteOpenCopy(path)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	if err := sqliteQuickCheck(ctx, pool, want != ""); err != nil {
		return nil, err
	}
	// A DB over the copy, to read its records like the live database's.
	cp := &DB{d: &sqliteDialect{path: path}, pool: pool}
	recs, _, err := cp.records(ctx, pool)
	if err != nil {
		return nil, err
	}
	if want == "" {
		return recs, nil
	}
	fp, err := fingerprint(ctx, d, pool)
	if err != nil {
		return nil, err
	}
	if fp != want {
		return nil, fmt.Errorf("its fingerprint %.12s differs from %.12s", fp, want)
	}
	return recs, nil
}

// snapshot copies the database file into dir, syncs it and verifies it
// before naming it db.sqlite. The app is stopped: the WAL is folded into
// the database file first (wal_checkpoint(TRUNCATE)), and the copy is
// made under the database's write lock, so the file alone is the whole,
// consistent database.
func (d *sqliteDialect) snapshot(ctx context.Context, db *DB, dir string, m *backupMeta) error {
	final := filepath.Join(dir, sqliteCopy)
	tmp := final + ".tmp"
	for _, p := range []string{final, tmp, tmp + "-journal", tmp + "-wal", tmp + "-shm"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("backup: %w", err)
		}
	}
	exists, err := d.exists()
	if err != nil {
		return err
	}
	if !exists {
		m.Absent = true
		m.CreatedDirs, err = d.missingDirs()
		return err
	}
	if err := d.swap(db, nil); err != nil { // a connection to the file at d.path
		return err
	}
	if err := db.pool.QueryRowContext(ctx, "PRAGMA main.journal_mode").Scan(&m.JournalMode); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	m.Verify = VerifyChecksum
	if db.verify == VerifyFingerprint {
		m.Verify = VerifyFingerprint
		if m.Fingerprint, err = fingerprint(ctx, d, db.pool); err != nil {
			return fmt.Errorf("backup: %w", err)
		}
	}
	if err := d.copyLocked(ctx, db, tmp, m); err != nil {
		os.Remove(tmp)
		return err
	}
	if m.Fingerprint != "" {
		// The paranoid's check, of the copy itself.
		recs, err := d.checkCopy(ctx, tmp, m.Fingerprint)
		if err == nil && !sameRecords(recs, m.Applied) {
			err = errors.New("its migration records differ from the database's")
		}
		if err != nil {
			return errorf(ErrVerify, "backup %s failed its check: %w; the database was not changed", tmp, err)
		}
	}
	if err := atomicfile.Rename(tmp, final); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	m.File = sqliteCopy
	return nil
}

// copyLocked folds the WAL into the database file and copies the file to
// tmp under the database's write lock, noting the database file's sha256
// (hashed while it is copied: copyVerified), size and permissions in m.
// PRAGMA quick_check runs meanwhile on the database file: the sha256
// recorded is of the bytes it checked, and a restore puts back only a
// copy with that sha256.
func (d *sqliteDialect) copyLocked(ctx context.Context, db *DB, tmp string, m *backupMeta) error {
	conn, err := db.pool.Conn(ctx)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer conn.Close()
	wal := strings.EqualFold(m.JournalMode, "wal")
	if wal {
		var busy, logFrames, done int
		if err := conn.QueryRowContext(ctx, "PRAGMA main.wal_checkpoint(TRUNCATE)").Scan(&busy, &logFrames, &done); err != nil {
			return fmt.Errorf("backup: checkpoint the WAL: %w", err)
		}
		if busy != 0 {
			return fmt.Errorf("backup: the database's WAL could not be checkpointed (another process uses %s): stop the app and retry", d.path)
		}
	}
	// BEGIN IMMEDIATE (the DSN's _txlock) and a read: no other connection
	// can write the file until the copy is made.
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("backup: lock the database: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // read only
	var n int
	if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM main.sqlite_schema").Scan(&n); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if wal {
		if fi, err := os.Stat(d.path + "-wal"); err == nil && fi.Size() > 0 {
			return fmt.Errorf("backup: %s was written to after its WAL was checkpointed (is the app stopped?): stop the app and retry", d.path)
		}
	}
	fi, err := os.Stat(d.path)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	m.Perm = uint32(fi.Mode().Perm())
	m.SHA256, m.Size, err = copyVerified(d.path, tmp, 0o600, "", func() error {
		// A reader of its own: the write lock lets readers in.
		pool, err := sql.Open("sqlite", sqliteURI(d.path, sqliteReadMapped))
		if err != nil {
			return err
		}
		defer pool.Close()
		return sqliteQuickCheck(ctx, pool, false)
	})
	if err != nil {
		return errorf(ErrVerify, "backup: copy %s to %s: %w; the database was not changed", d.path, tmp, err)
	}
	return nil
}

// restore puts the backup back and verifies the database.
//
// The backup is copied next to the live database (<db>.restore-tmp) and
// synced while it is hashed; only when its sha256 is the one recorded (a
// damaged backup is not restored: the database is not touched; in
// fingerprint mode also checked by quick_check) are the live database's
// -wal, -shm and -journal, which would be replayed over the restored
// file, removed and the copy renamed over the database. A crash at any point leaves either the old
// file or the restored one; Rollback again finishes the job. The copy
// keeps the live file's permissions and owner, and its journal mode is
// the backup's (recorded in the file's header).
func (d *sqliteDialect) restore(ctx context.Context, db *DB, b *Backup) error {
	if b.m.Absent {
		if err := d.removeDatabase(db); err != nil {
			return err
		}
		return removeDirs(b.m.CreatedDirs)
	}
	src := filepath.Join(b.dir, b.m.File)
	damaged := func(err error) error {
		return errorf(ErrVerify, "backup %s is damaged (%w); the database was not changed: restore it by hand from another backup", src, err)
	}
	if b.m.SHA256 == "" {
		// A backup made before backups had a checksum: its fingerprint.
		if _, err := d.checkCopy(ctx, src, b.m.Fingerprint); err != nil {
			return damaged(err)
		}
	}
	tmp := d.path + ".restore-tmp"
	perm := fs.FileMode(b.m.Perm)
	live, err := os.Stat(d.path)
	if err == nil {
		perm = live.Mode().Perm()
	}
	if perm == 0 {
		perm = 0o644
	}
	for _, suffix := range []string{"", "-journal", "-wal", "-shm"} {
		if err := os.Remove(tmp + suffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("restore %s: %w", d.path, err)
		}
	}
	defer os.Remove(tmp) // gone once renamed
	// The backup's sha256, equal to the one recorded, shows it to be the
	// bytes that passed quick_check when the backup was made (copyLocked):
	// checking them again would add no knowledge and the time of a copy.
	// The paranoid's fingerprint mode checks the backup again while it
	// is copied.
	var checkErr error
	_, _, err = copyVerified(src, tmp, perm, b.m.SHA256, func() error {
		if b.m.Fingerprint != "" {
			_, checkErr = d.checkCopy(ctx, src, "")
		}
		return nil
	})
	if errors.Is(err, ErrVerify) {
		return damaged(err)
	}
	if err != nil {
		return fmt.Errorf("restore %s from %s: %w; the database was not changed", d.path, src, err)
	}
	if checkErr != nil {
		return damaged(checkErr)
	}
	if live != nil {
		if err := os.Chmod(tmp, live.Mode().Perm()); err != nil { // against the umask
			return err
		}
		if err := copyOwner(tmp, live); err != nil {
			return err
		}
	}
	if err := d.swap(db, func() error {
		release := holdOld(d.path)
		defer release()
		return atomicfile.Rename(tmp, d.path)
	}); err != nil {
		return fmt.Errorf("restore %s from %s: %w", d.path, src, err)
	}
	if testHook != nil {
		testHook("restore")
	}
	// Check through a fresh connection, reading the file at d.path.
	if err := d.swap(db, nil); err != nil {
		return err
	}
	if b.m.Fingerprint != "" {
		if err := sqliteQuickCheck(ctx, db.pool, true); err != nil {
			return errorf(ErrVerify, "restored database %s failed its check: %w", d.path, err)
		}
		fp, err := fingerprint(ctx, d, db.pool)
		if err != nil {
			return err
		}
		if fp != b.m.Fingerprint {
			return errorf(ErrVerify, "restored database %s differs from the backup (fingerprint %.12s, want %.12s)", d.path, fp, b.m.Fingerprint)
		}
	}
	return d.keepJournalMode(ctx, db, b.m.JournalMode)
}

// keepJournalMode puts the restored database in the journal mode it had
// (a property of the file, which the copy keeps; a backup made by VACUUM
// INTO, before checksums, did not).
func (d *sqliteDialect) keepJournalMode(ctx context.Context, db *DB, was string) error {
	var mode string
	if err := db.pool.QueryRowContext(ctx, "PRAGMA main.journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("restored database %s: %w", d.path, err)
	}
	if wal := strings.EqualFold(was, "wal"); wal != strings.EqualFold(mode, "wal") {
		want := "DELETE"
		if wal {
			want = "WAL"
		}
		if _, err := db.pool.ExecContext(ctx, "PRAGMA main.journal_mode = "+want); err != nil {
			return fmt.Errorf("restore %s: set journal mode %s: %w", d.path, want, err)
		}
	}
	return nil
}
