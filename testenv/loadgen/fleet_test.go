package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

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
