package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRampPacesByDueTime: agents start at the ramp's rate from its start,
// however long the sleeps between them lasted: one whose time has passed
// starts at once, and the rate is not lowered by the sleeps' overshoot.
func TestRampPacesByDueTime(t *testing.T) {
	t0 := time.Unix(1000, 0)
	r := newRamp(t0, 2000) // one every 500 µs
	for _, c := range []struct {
		i    int
		now  time.Duration // since t0
		want time.Duration
	}{
		{0, 0, 0},
		{1, 0, 500 * time.Microsecond},
		{1, 300 * time.Microsecond, 200 * time.Microsecond},
		{2, 50 * time.Millisecond, 0}, // a sleep overshot: agents 2.. are late, none waits
		{100, 50 * time.Millisecond, 0},
		{101, 50 * time.Millisecond, 500 * time.Microsecond},
		{2000, 0, time.Second},
	} {
		if got := r.wait(c.i, t0.Add(c.now)); got != c.want {
			t.Errorf("agent %d at +%s waits %s, want %s", c.i, c.now, got, c.want)
		}
	}
	if got := newRamp(t0, 0).wait(5000, t0); got != 0 {
		t.Errorf("no ramp: agent 5000 waits %s, want 0", got)
	}
}

func TestParseSources(t *testing.T) {
	got, err := parseSources("127.0.0.2-127.0.0.4,127.0.1.9")
	if err != nil {
		t.Fatal(err)
	}
	var s []string
	for _, a := range got {
		s = append(s, a.IP.String())
	}
	if strings.Join(s, " ") != "127.0.0.2 127.0.0.3 127.0.0.4 127.0.1.9" {
		t.Errorf("sources %v", s)
	}
	for _, bad := range []string{"10.0.0.1", "127.0.0.9-127.0.0.2", "127.0.0.2-127.0.1.3", "127.0.0.2-", "localhost"} {
		if _, err := parseSources(bad); err == nil || !strings.Contains(err.Error(), "--source-ips") {
			t.Errorf("parseSources(%q) = %v, want an error naming --source-ips", bad, err)
		}
	}
}

func TestParseServers(t *testing.T) {
	got, err := parseServers("http://127.0.0.1:8080/, http://127.0.0.1:8081")
	if err != nil || len(got) != 2 || got[0] != "http://127.0.0.1:8080" {
		t.Fatalf("parseServers = %v, %v", got, err)
	}
	for _, bad := range []string{"", "http://example.com:80", "https://127.0.0.1:8080", "127.0.0.1:8080"} {
		if _, err := parseServers(bad); err == nil {
			t.Errorf("parseServers(%q) accepted", bad)
		}
	}
}

// TestShardsSplitTheCredentials: the shards of a file take every
// credential exactly once, in contiguous blocks.
func TestShardsSplitTheCredentials(t *testing.T) {
	path := filepath.Join(t.TempDir(), "creds.txt")
	var lines []string
	for i := range 10 {
		lines = append(lines, "cred-"+string(rune('a'+i)))
	}
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var all []string
	for i := 1; i <= 3; i++ {
		f := fleet{creds: path}
		var err error
		if f.shard, f.shards, err = parseShard(strings.Join([]string{string(rune('0' + i)), "3"}, "/")); err != nil {
			t.Fatal(err)
		}
		mine, first, err := f.mine()
		if err != nil {
			t.Fatal(err)
		}
		if first != len(all) {
			t.Errorf("shard %d starts at %d, want %d", i, first, len(all))
		}
		all = append(all, mine...)
	}
	if strings.Join(all, ",") != strings.Join(lines, ",") {
		t.Errorf("shards took %v, want %v", all, lines)
	}
	for _, bad := range []string{"0/3", "4/3", "1", "a/b", "1/0"} {
		if _, _, err := parseShard(bad); err == nil {
			t.Errorf("parseShard(%q) accepted", bad)
		}
	}
}

// TestCPUProfileWrittenOnStop: --cpuprofile leaves a profile go tool
// pprof reads (gzip'd protobuf) once stopped, and stopping twice (at
// READY, then on return) is harmless; a path that cannot be created is
// refused before any agent starts.
func TestCPUProfileWrittenOnStop(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shard.pprof")
	stop, err := startProfile(path)
	if err != nil {
		t.Fatal(err)
	}
	stop()
	stop()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
		t.Fatalf("profile is %d bytes, not gzip'd: %q", len(b), b[:min(len(b), 8)])
	}
	if _, err := startProfile(filepath.Join(t.TempDir(), "missing", "x.pprof")); err == nil {
		t.Fatal("a profile path in a missing directory was accepted")
	}
}
