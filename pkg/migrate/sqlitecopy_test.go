package migrate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// readBackupMeta reads a backup's backup.json as a map, to look at and
// edit what it records.
func readBackupMeta(t *testing.T, b *Backup) map[string]any {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(b.Dir(), backupFile))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func writeBackupMeta(t *testing.T, b *Backup, m map[string]any) *Backup {
	t.Helper()
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(b.Dir(), backupFile), data, 0o600); err != nil {
		t.Fatal(err)
	}
	nb, err := OpenBackup(b.Dir())
	if err != nil {
		t.Fatal(err)
	}
	return nb
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// TestSQLiteBackupVerifyModes: in either verify mode and journal mode the
// backup is the database file alone (rows the app left in its WAL:
// TestSQLiteWALLeftByCrashedApp), records its sha256 (and, with fingerprint, the database's
// fingerprint), and Rollback puts the database back exactly, in its
// journal mode, without a -wal that could be replayed over it.
func TestSQLiteBackupVerifyModes(t *testing.T) {
	for _, wal := range []bool{false, true} {
		for _, mode := range []string{"", VerifyChecksum, VerifyFingerprint} {
			t.Run(fmt.Sprintf("wal=%v/%q", wal, mode), func(t *testing.T) {
				ctx := context.Background()
				tg := newSQLiteTarget(t, wal)
				db := tg.open(t)
				if err := db.SetBackupVerify(mode); err != nil {
					t.Fatal(err)
				}
				applyRelease(t, db, load(t, release1), "1.0.0")
				db.Close()
				tg.appExec(t, clientRows...)
				fp0 := tg.fingerprint(t)
				rows0 := tg.appQuery(t, customersQuery)
				db = tg.open(t)
				if err := db.SetBackupVerify(mode); err != nil {
					t.Fatal(err)
				}
				_, b := applyRelease(t, db, load(t, release2), "2.0.0")

				m := readBackupMeta(t, b)
				copyPath := filepath.Join(b.Dir(), sqliteCopy)
				if m["sha256"] != fileSHA256(t, copyPath) {
					t.Errorf("backup.json sha256 %v, the copy's is %s", m["sha256"], fileSHA256(t, copyPath))
				}
				want := VerifyChecksum
				if mode == VerifyFingerprint {
					want = VerifyFingerprint
				}
				if m["verify"] != want {
					t.Errorf("verify %v, want %s", m["verify"], want)
				}
				if fp, _ := m["fingerprint"].(string); (fp != "") != (mode == VerifyFingerprint) || fp != "" && fp != fp0 {
					t.Errorf("fingerprint %q in a %q backup (the database's: %s)", fp, mode, fp0)
				}
				// The copy alone, without any -wal, holds the app's rows.
				cp := &target{driver: "sqlite", sqlitePath: filepath.Join(t.TempDir(), "copy.db")}
				cp.dsn = cp.sqlitePath
				data, err := os.ReadFile(copyPath)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(cp.sqlitePath, data, 0o600); err != nil {
					t.Fatal(err)
				}
				if got := cp.appQuery(t, customersQuery); !slices.Equal(got, rows0) {
					t.Fatalf("the backup copy holds customers %q, want %q", got, rows0)
				}

				if err := db.Rollback(ctx, b); err != nil {
					t.Fatal(err)
				}
				db.Close()
				if fileIsWAL(t, tg.sqlitePath) != wal {
					t.Errorf("WAL mode %v, want %v", !wal, wal)
				}
				if fi, err := os.Stat(tg.sqlitePath + "-wal"); err == nil && fi.Size() > 0 {
					t.Errorf("a -wal of %d bytes is left next to the restored database", fi.Size())
				}
				if _, err := os.Stat(tg.sqlitePath + ".restore-tmp"); err == nil {
					t.Error("the restore's temporary copy is left behind")
				}
				if tg.fingerprint(t) != fp0 {
					t.Fatal("after Rollback the database differs from before the job")
				}
			})
		}
	}
}

// TestSQLiteCorruptBackupRefused: a backup whose bytes changed on disk
// (one flipped byte in a page, which no quick_check would see) is not
// restored, and the database is left as it is.
func TestSQLiteCorruptBackupRefused(t *testing.T) {
	ctx := context.Background()
	tg := newSQLiteTarget(t, false)
	db := tg.open(t)
	applyRelease(t, db, load(t, release1), "1.0.0")
	tg.appExec(t, clientRows...)
	_, b := applyRelease(t, db, load(t, release2), "2.0.0")
	copyPath := filepath.Join(b.Dir(), sqliteCopy)
	data, err := os.ReadFile(copyPath)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)-1] ^= 0xff // the last page's unused tail
	if err := os.WriteFile(copyPath, data, 0o600); err != nil {
		t.Fatal(err)
	}
	fp := tg.fingerprint(t)
	if err := db.Rollback(ctx, b); !errors.Is(err, ErrVerify) || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("Rollback: %v, want ErrVerify (damaged backup)", err)
	}
	if tg.fingerprint(t) != fp {
		t.Fatal("Rollback changed the database")
	}
	if _, err := os.Stat(tg.sqlitePath + ".restore-tmp"); err == nil {
		t.Error("the restore's temporary copy is left behind")
	}
}

// TestSQLiteBackupWithoutChecksum: a backup recorded, as before backups
// had checksums, with a fingerprint and no sha256 (an agent updated in the
// middle of a job) is still restored, checked by its fingerprint; and
// refused when the copy does not match it.
func TestSQLiteBackupWithoutChecksum(t *testing.T) {
	for _, tamper := range []bool{false, true} {
		t.Run(fmt.Sprintf("tampered=%v", tamper), func(t *testing.T) {
			ctx := context.Background()
			tg := newSQLiteTarget(t, true)
			db := tg.open(t)
			applyRelease(t, db, load(t, release1), "1.0.0")
			tg.appExec(t, clientRows...)
			fp0 := tg.fingerprint(t)
			_, b := applyRelease(t, db, load(t, release2), "2.0.0")
			m := readBackupMeta(t, b)
			delete(m, "sha256")
			delete(m, "size")
			delete(m, "verify")
			m["fingerprint"] = fp0
			b = writeBackupMeta(t, b, m)
			if tamper {
				cp := &target{driver: "sqlite", dsn: filepath.Join(b.Dir(), sqliteCopy)}
				cp.appExec(t, "UPDATE customers SET name = 'tampered' WHERE id = 1")
			}
			fp := tg.fingerprint(t)
			err := db.Rollback(ctx, b)
			if tamper {
				if !errors.Is(err, ErrVerify) || !strings.Contains(err.Error(), "damaged") {
					t.Fatalf("Rollback: %v, want ErrVerify (damaged backup)", err)
				}
				if tg.fingerprint(t) != fp {
					t.Fatal("Rollback changed the database")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tg.fingerprint(t) != fp0 {
				t.Fatal("after Rollback the database differs from before the job")
			}
		})
	}
}

func TestSetBackupVerify(t *testing.T) {
	db := newSQLiteTarget(t, false).open(t)
	if err := db.SetBackupVerify("rows"); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "use checksum or fingerprint") {
		t.Fatalf("SetBackupVerify(rows): %v", err)
	}
}
