//go:build e2e && unix

package testenv

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dropless/dropless/pkg/protocol"
)

// TestDataRolledBack: a site whose app keeps uploads in a [[data]]
// directory is upgraded to a release that writes there as it starts
// (adds files, rewrites one in place, removes one) and then fails its
// health check: the agent rolls back, and the directory is exactly as it
// was before the job, byte for byte, mode for mode.
func TestDataRolledBack(t *testing.T) {
	t.Parallel()
	env := New(t)
	env.Publish(t, "1.0.0", Healthy)
	site := env.PrepareSite(t, "acme-prod", "acme")
	data := filepath.Join(site.Dir, "appdata")
	for name, content := range map[string]string{"shared.txt": "the client's shared state\n", "old.txt": "old\n", "uploads/photo.jpg": strings.Repeat("\xff\xd8jpeg", 4096)} {
		p := filepath.Join(data, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("uploads/photo.jpg", filepath.Join(data, "latest")); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(site.Config, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "\n[[data]]\npath = %q\n", data)
	f.Close()
	site.StartAgent(t)
	Await(t, "the agent enrolled and checked in", func() bool { return site.Info(t).LastSeen != nil })
	site.Upgrade(t, "1.0.0")
	site.AwaitHealthy(t, "1.0.0")
	site.AwaitJob(t)
	before := treeFingerprint(t, data)

	// 2.0.0 writes into the data as it starts, then fails its health
	// check; its post-start hook proves the writes happened.
	evidence := filepath.Join(site.Dir, "evidence.txt")
	env.PublishBundle(t, "2.0.0", Bundle{
		Files: map[string]string{"unhealthy": "fails its health check\n", "data_writes": data},
		Hooks: map[string]string{"post-start": fmt.Sprintf("#!/bin/sh\ncat %q > %q\nls %q >> %q\n", filepath.Join(data, "shared.txt"), evidence, data, evidence)},
	})
	site.Upgrade(t, "2.0.0")
	j := site.AwaitJob(t)
	if j.Result != protocol.ResultRolledBack {
		t.Fatalf("2.0.0: %s (%s)", j.Result, j.Reason)
	}
	site.AwaitHealthy(t, "1.0.0")
	ev, err := os.ReadFile(evidence)
	if err != nil || !strings.Contains(string(ev), "rewritten in place by 2.0.0") || !strings.Contains(string(ev), "from-2.0.0.txt") {
		t.Fatalf("2.0.0 did not write its data (%v): %q", err, ev)
	}
	if got := treeFingerprint(t, data); !slices.Equal(got, before) {
		t.Errorf("the data after the rollback differs:\n got %q\nwant %q", got, before)
	}
	if !slices.ContainsFunc(j.Events, func(e protocol.Event) bool {
		return e.State == protocol.StateBackingUp && strings.Contains(e.Message, data)
	}) {
		t.Errorf("no backing_up event names %s: %v", data, eventStates(j))
	}
}

// treeFingerprint lists every entry under root with its mode, bytes (a
// hash) or link target.
func treeFingerprint(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		line := fmt.Sprintf("%s %v", p, fi.Mode())
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			line += " -> " + target
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			line += " " + hex.EncodeToString(sum[:])
		}
		out = append(out, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
