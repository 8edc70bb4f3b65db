//go:build unix

package selfupdate

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/bundle"
)

// script writes an executable shell script.
func script(t *testing.T, path, body string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func sum(t *testing.T, path string) string {
	t.Helper()
	s, err := FileSHA256(path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// installed is an "agent" at dir/bin/updateagent and a new build of it.
func installed(t *testing.T) (Record, string) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "bin"), 0o755)
	exe := script(t, filepath.Join(dir, "bin", "updateagent"), "echo 1.0.0")
	newBin := script(t, filepath.Join(dir, "new"), "echo 2.0.0")
	return Record{Job: "job-1", From: "1.0.0", To: "2.0.0", Exe: exe, Old: OldPath(exe), OldSHA256: sum(t, exe), NewSHA256: sum(t, newBin)}, newBin
}

func TestSwapKeepsTheOldBinaryAndRestorePutsItBack(t *testing.T) {
	r, newBin := installed(t)
	if err := Swap(r, newBin); err != nil {
		t.Fatal(err)
	}
	if got := sum(t, r.Exe); got != r.NewSHA256 {
		t.Fatalf("after Swap the executable is %s, want the new binary", got)
	}
	if got := sum(t, r.Old); got != r.OldSHA256 {
		t.Fatalf("the old binary kept at %s is %s, want %s", r.Old, got, r.OldSHA256)
	}
	if fi, _ := os.Stat(r.Exe); fi.Mode().Perm() != 0o755 {
		t.Errorf("the new executable's mode is %v, want the old one's 0755", fi.Mode().Perm())
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(r.Exe), ".updateagent.new")); err == nil {
		t.Error("the temporary .new file is left beside the executable")
	}
	// Again (a restart after the swap): still the new binary, old kept.
	if err := Swap(r, newBin); err != nil || sum(t, r.Exe) != r.NewSHA256 || sum(t, r.Old) != r.OldSHA256 {
		t.Fatalf("Swap again: %v", err)
	}
	changed, err := Restore(r)
	if err != nil || !changed {
		t.Fatalf("Restore = %v, %v; want true, nil", changed, err)
	}
	if got := sum(t, r.Exe); got != r.OldSHA256 {
		t.Fatalf("after Restore the executable is %s, want the old binary", got)
	}
	// Idempotent: nothing to do the second time.
	if changed, err := Restore(r); err != nil || changed {
		t.Fatalf("Restore again = %v, %v; want false, nil", changed, err)
	}
}

func TestSwapRefusesABinaryOtherThanVerified(t *testing.T) {
	r, newBin := installed(t)
	os.WriteFile(newBin, []byte("#!/bin/sh\necho evil\n"), 0o755)
	err := Swap(r, newBin)
	if err == nil || !strings.Contains(strings.ToLower(err.Error()), "checksum") {
		t.Fatalf("Swap of a changed binary: %v, want a checksum error", err)
	}
	if got := sum(t, r.Exe); got != r.OldSHA256 {
		t.Fatal("the executable was changed by a refused swap")
	}
}

func TestRestoreRefusesAMissingOrChangedOldBinary(t *testing.T) {
	r, newBin := installed(t)
	if err := Swap(r, newBin); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(r.Old, []byte("not the old agent"), 0o755)
	if _, err := Restore(r); err == nil || !strings.Contains(err.Error(), "reinstall") {
		t.Fatalf("Restore with a changed old binary: %v", err)
	}
	if got := sum(t, r.Exe); got != r.NewSHA256 {
		t.Fatal("Restore replaced the executable with a binary that is not the old one")
	}
}

func TestRecordRoundTrip(t *testing.T) {
	data := t.TempDir()
	if _, ok, err := ReadRecord(data); ok || err != nil {
		t.Fatalf("no record: %v %v", ok, err)
	}
	r, _ := installed(t)
	r.SwappedAt = time.Now().UTC().Truncate(time.Millisecond)
	if err := WriteRecord(data, r); err != nil {
		t.Fatal(err)
	}
	got, ok, err := ReadRecord(data)
	if err != nil || !ok || got != r {
		t.Fatalf("ReadRecord = %+v %v %v, want %+v", got, ok, err, r)
	}
	os.WriteFile(RecordPath(data), []byte("{"), 0o600)
	if _, _, err := ReadRecord(data); err == nil {
		t.Fatal("a broken record was read")
	}
	Clean(data)
	if _, err := os.Stat(Dir(data)); err == nil {
		t.Fatal("Clean left the directory")
	}
}

func TestStageTakesThisPlatformsBinary(t *testing.T) {
	data := t.TempDir()
	pack := func(files map[string]string) string {
		src := t.TempDir()
		for name, body := range files {
			p := filepath.Join(src, filepath.FromSlash(name))
			os.MkdirAll(filepath.Dir(p), 0o755)
			os.WriteFile(p, []byte(body), 0o755)
		}
		var buf bytes.Buffer
		if err := bundle.Pack(context.Background(), src, &buf); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(t.TempDir(), "b.tar.gz")
		os.WriteFile(out, buf.Bytes(), 0o644)
		return out
	}
	other := "files/plan9_386/updateagent"
	b := pack(map[string]string{BinaryName(): "#!/bin/sh\necho 2.0.0\n", other: "x"})
	bin, err := Stage(context.Background(), b, data)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckVersion(context.Background(), bin, "2.0.0"); err != nil {
		t.Fatal(err)
	}
	if err := CheckVersion(context.Background(), bin, "3.0.0"); err == nil || !strings.Contains(err.Error(), `"2.0.0"`) {
		t.Fatalf("CheckVersion of another version: %v", err)
	}
	_, err = Stage(context.Background(), pack(map[string]string{other: "x"}), data)
	if err == nil || !strings.Contains(err.Error(), runtime.GOOS+"/"+runtime.GOARCH) {
		t.Fatalf("Stage without this platform's binary: %v", err)
	}
}

func TestTrial(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	dir := t.TempDir()
	marker := filepath.Join(dir, "healthy")
	healthy := func() (bool, error) { _, err := os.Stat(marker); return err == nil, nil }
	rec := func(body string) Record {
		return Record{Job: "job-1", To: "2.0.0", Staged: script(t, filepath.Join(dir, "agent"), body)}
	}
	ctx := context.Background()

	t.Run("healthy", func(t *testing.T) {
		os.Remove(marker)
		// The child sees the job in its environment and "checks in".
		r := rec(`[ "$` + TrialEnv + `" = job-1 ] && touch ` + marker + `; exec sleep 60`)
		if err := Trial(ctx, r, nil, time.Minute, healthy, log); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("exits at start", func(t *testing.T) {
		os.Remove(marker)
		err := Trial(ctx, rec("exit 4"), nil, time.Minute, healthy, log)
		if err == nil || !strings.Contains(err.Error(), "exited before it was healthy (exit status 4)") {
			t.Fatalf("Trial = %v", err)
		}
	})
	t.Run("never healthy", func(t *testing.T) {
		os.Remove(marker)
		err := Trial(ctx, rec("exec sleep 60"), nil, 300*time.Millisecond, healthy, log)
		if err == nil || !strings.Contains(err.Error(), "did not check in healthy within") {
			t.Fatalf("Trial = %v", err)
		}
	})
}
