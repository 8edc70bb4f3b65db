package migrate

import (
	"context"
	"errors"
	"os"
	"slices"
	"testing"
)

// ReadRecords shows every record, the drifted ones Plan refuses too,
// and changes nothing: no SQLite file is created, no row is written.
func TestReadRecords(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg *target) {
		ctx := context.Background()
		names := func() []string {
			t.Helper()
			recs, err := ReadRecords(ctx, tg.driver, tg.dsn)
			if err != nil {
				t.Fatalf("ReadRecords: %v", err)
			}
			var out []string
			for _, r := range recs {
				out = append(out, r.Name+"@"+r.Release+"="+r.Checksum[:min(4, len(r.Checksum))])
			}
			return out
		}
		if got := names(); got != nil {
			t.Fatalf("ReadRecords of a database never migrated = %q, want none", got)
		}
		if tg.driver == "sqlite" {
			if _, err := os.Stat(tg.sqlitePath); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("ReadRecords created the SQLite file: %v", err)
			}
		}
		db := tg.open(t)
		applyRelease(t, db, load(t, release1), "1.0.0")
		tg.appExec(t, "UPDATE "+TableName+" SET checksum = 'f00d' WHERE id = 2")
		fp := tg.fingerprint(t)
		want := []string{"0001_create_customers@1.0.0=" + load(t, release1)[0].Checksum[:4], "0002_add_email@1.0.0=f00d"}
		if got := names(); !slices.Equal(got, want) {
			t.Errorf("ReadRecords = %q, want %q", got, want)
		}
		if _, err := db.Plan(ctx, load(t, release1), PlanOptions{}); !errors.Is(err, ErrDrift) {
			t.Errorf("Plan = %v, want ErrDrift (the record ReadRecords showed)", err)
		}
		if tg.fingerprint(t) != fp {
			t.Error("ReadRecords changed the database")
		}
	})
	if _, err := ReadRecords(context.Background(), "oracle", "x"); !errors.Is(err, ErrUnsupported) {
		t.Errorf("ReadRecords of an unknown driver = %v, want ErrUnsupported", err)
	}
}
