// Package selfupdate swaps the agent's own executable for a new release
// and back (github.com/minio/selfupdate), after running the new binary on
// trial under the old one until it proved itself healthy.
//
// The steps, each journaled before it acts (engine's AgentJob):
//
//	verified     the bundle came through TUF; Stage takes the binary for
//	             this platform out of it
//	preflight    CheckVersion runs it once (`updateagent version` must
//	             print the assigned version)
//	starting     the old agent writes the Record (data_dir/selfupdate/
//	             record.json), snapshots the journal, closes it, and
//	             Trial starts the staged new binary as its child
//	health_check the child journals this on start, then checks in with
//	             the server reporting its version
//	switching    the child journals this once that check-in worked; the
//	             old agent stops the child, Swap keeps a copy of the old
//	             binary (.updateagent.old beside it) and renames the new
//	             one over the executable, and the process re-executes
//	             itself as the new binary, which checks in again and ends
//	             the job succeeded (its message says how long after the
//	             swap)
//
// When the child exits, or has not checked in within the trial time, the
// old agent kills it and ends the job rolled_back with the reason; the
// executable was never changed. The executable changes in one rename,
// only after the new binary proved itself: a kill -9 or a power loss at
// any point leaves the old binary there, or the new one that checked in
// healthy. Whichever binary starts next ends the job from the journal
// and the Record (runner's recoverSelfUpdate).
package selfupdate

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/dropless/dropless/pkg/atomicfile"
	"github.com/dropless/dropless/pkg/bundle"
)

// TrialEnv names, in the environment of a new binary on trial, the job
// it is on trial for.
const TrialEnv = "UPDATEAGENT_SELFUPDATE_TRIAL"

// Dir is where a self-update keeps its files in the data dir.
func Dir(dataDir string) string { return filepath.Join(dataDir, "selfupdate") }

// RecordPath is the Record's file.
func RecordPath(dataDir string) string { return filepath.Join(Dir(dataDir), "record.json") }

// JournalSnapshot is the copy of the journal taken before the swap.
func JournalSnapshot(dataDir string) string { return filepath.Join(Dir(dataDir), "journal-before.db") }

// Record is what a self-update must remember across a crash: which job,
// which executable, where the old binary is kept and the hashes that tell
// which of the two is in place.
type Record struct {
	Job       string    `json:"job"`
	From      string    `json:"from"`
	To        string    `json:"to"`
	Exe       string    `json:"exe"`        // the agent's executable
	Old       string    `json:"old"`        // the copy of the old binary
	OldSHA256 string    `json:"old_sha256"` // of the old binary
	NewSHA256 string    `json:"new_sha256"` // of the new binary
	Staged    string    `json:"staged"`     // the new binary, unpacked, run on trial
	SwappedAt time.Time `json:"swapped_at,omitzero"`
	// Failure is why the trial failed, set before the old binary is
	// started again to end the job.
	Failure string `json:"failure,omitempty"`
}

// WriteRecord writes r durably (temp file, fsync, rename, fsync dir).
func WriteRecord(dataDir string, r Record) error {
	if err := os.MkdirAll(Dir(dataDir), 0o700); err != nil {
		return err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(RecordPath(dataDir), append(b, '\n'), 0o600)
}

// ReadRecord reads the Record; ok is false when there is none.
func ReadRecord(dataDir string) (r Record, ok bool, err error) {
	b, err := os.ReadFile(RecordPath(dataDir))
	if errors.Is(err, fs.ErrNotExist) {
		return r, false, nil
	}
	if err != nil {
		return r, false, err
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, false, fmt.Errorf("read %s: %w", RecordPath(dataDir), err)
	}
	if r.Job == "" || r.Exe == "" || r.Old == "" {
		return r, false, fmt.Errorf("read %s: job, exe or old missing", RecordPath(dataDir))
	}
	return r, true, nil
}

// Clean removes the Record and the staged files; the copy of the old
// binary beside the executable stays until the next self-update.
func Clean(dataDir string) error { return os.RemoveAll(Dir(dataDir)) }

// BinaryName is the agent binary's path inside a release of the agent
// for this platform: files/<GOOS>_<GOARCH>/updateagent[.exe].
func BinaryName() string {
	name := "updateagent"
	if runtime.GOOS == "windows" {
		name += ".exe"
	}
	return "files/" + runtime.GOOS + "_" + runtime.GOARCH + "/" + name
}

// Stage unpacks the verified bundle into Dir(dataDir)/unpacked (with the
// bundle package's defensive unpacking) and returns the path of the binary
// for this platform.
func Stage(ctx context.Context, bundlePath, dataDir string) (string, error) {
	dest := filepath.Join(Dir(dataDir), "unpacked")
	if err := os.RemoveAll(dest); err != nil {
		return "", err
	}
	f, err := os.Open(bundlePath)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if _, err := bundle.Unpack(ctx, f, dest, bundle.DefaultLimits()); err != nil {
		return "", err
	}
	bin := filepath.Join(dest, filepath.FromSlash(BinaryName()))
	fi, err := os.Stat(bin)
	if err != nil || !fi.Mode().IsRegular() {
		return "", fmt.Errorf("the release has no agent for this platform (%s): ask the release team to add %s to the bundle", runtime.GOOS+"/"+runtime.GOARCH, BinaryName())
	}
	return bin, nil
}

// CheckVersion runs `bin version` and checks that it prints want: a
// binary that does not run on this machine at all, or is another version
// than signed, is refused before anything is swapped.
func CheckVersion(ctx context.Context, bin, want string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "version")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("the new agent does not run here (%s version: %v: %s)", filepath.Base(bin), err, strings.TrimSpace(out.String()))
	}
	if got := strings.TrimSpace(out.String()); got != want {
		return fmt.Errorf("the new agent says it is version %q, the release is %s: ask the release team to build it with that version", got, want)
	}
	return nil
}

// FileSHA256 returns the hex SHA-256 of a file.
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// OldPath is where the old binary is kept: beside the executable (same
// file system, so putting it back is a rename), hidden.
func OldPath(exe string) string {
	return filepath.Join(filepath.Dir(exe), "."+filepath.Base(exe)+".old")
}

// Swap puts the binary newBin (whose SHA-256 is r.NewSHA256) in place of
// r.Exe, after keeping a synced copy of the old binary at r.Old. It is
// safe to call again after an interruption.
func Swap(r Record, newBin string) error {
	fi, err := os.Stat(r.Exe)
	if err != nil {
		return fmt.Errorf("swap: %w", err)
	}
	if err := KeepOld(r); err != nil {
		return fmt.Errorf("swap: %w", err)
	}
	sum, err := hex.DecodeString(r.NewSHA256)
	if err != nil {
		return fmt.Errorf("swap: new sha256: %w", err)
	}
	f, err := os.Open(newBin)
	if err != nil {
		return fmt.Errorf("swap: %w", err)
	}
	defer f.Close()
	return replace(r.Exe, f, sum, fi.Mode().Perm())
}

// KeepOld copies the old binary (synced) to r.Old unless it is there.
func KeepOld(r Record) error {
	if sum, err := FileSHA256(r.Old); err == nil && sum == r.OldSHA256 {
		return nil
	}
	fi, err := os.Stat(r.Exe)
	if err != nil {
		return err
	}
	if err := copyFile(r.Exe, r.Old, fi.Mode().Perm(), r.OldSHA256); err != nil {
		return fmt.Errorf("keep the old binary: %w", err)
	}
	return nil
}

// Restore puts the old binary back at r.Exe unless it is there already,
// and reports whether it had to. It is safe to call again after an
// interruption.
func Restore(r Record) (bool, error) {
	if sum, err := FileSHA256(r.Exe); err == nil && sum == r.OldSHA256 {
		return false, nil
	}
	if s, err := FileSHA256(r.Old); err != nil || s != r.OldSHA256 {
		return false, fmt.Errorf("the old agent binary kept at %s is missing or changed: reinstall the agent package", r.Old)
	}
	sum, _ := hex.DecodeString(r.OldSHA256)
	f, err := os.Open(r.Old)
	if err != nil {
		return false, err
	}
	defer f.Close()
	mode := os.FileMode(0o755)
	if fi, err := f.Stat(); err == nil {
		mode = fi.Mode().Perm()
	}
	if err := replace(r.Exe, f, sum, mode); err != nil {
		return false, fmt.Errorf("put the old agent binary back: %w", err)
	}
	return true, nil
}

// copyFile copies src to dst (synced), checking the copy's SHA-256.
func copyFile(src, dst string, mode os.FileMode, wantSHA string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	h := sha256.New()
	if err := atomicfile.Write(dst, mode, func(w io.Writer) error {
		_, err := io.Copy(io.MultiWriter(w, h), in)
		return err
	}); err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != wantSHA {
		os.Remove(dst)
		return fmt.Errorf("%s changed while it was copied (sha256 %s, want %s)", src, got, wantSHA)
	}
	return nil
}
