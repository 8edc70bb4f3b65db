package fleet

import (
	"strings"
	"testing"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/pkg/versions"
)

func rel(v, from string, yanked bool) protocol.Release {
	return protocol.Release{Product: "p", Version: v, UpgradeFrom: from, Yanked: yanked}
}

func TestPlanPath(t *testing.T) {
	all := []protocol.Release{
		rel("1.0.0", "", false),
		rel("1.5.0", ">= 1.0, < 1.5", false),
		rel("1.9.0", ">= 1.5, < 1.9", true), // yanked: never a hop
		rel("2.0.0", ">= 1.5, < 2.0", false),
		rel("2.1.0", ">= 2.0, < 2.1", false),
		rel("3.0.0", ">= 2.1, < 3.0", false),
		rel("4.0.0", ">= 3.9", false),
		rel("5.0.0", "", false),
	}
	find := func(v string) protocol.Release {
		for _, r := range all {
			if versions.Equal(r.Version, v) {
				return r
			}
		}
		t.Fatalf("no %s", v)
		return protocol.Release{}
	}
	tests := []struct {
		name, installed, target string
		downgrade               bool
		want                    string
		wantErr                 string
	}{
		{"fresh site installs the target", "", "3.0.0", false, "[3.0.0]", ""},
		{"same version: nothing", "2.0.0", "2.0", false, "[]", ""},
		{"direct", "2.0.0", "2.1.0", false, "[2.1.0]", ""},
		{"no constraint admits all", "1.0.0", "5.0.0", false, "[5.0.0]", ""},
		{"through every required step", "1.0.0", "3.0.0", false, "[1.5.0 -> 2.0.0 -> 2.1.0 -> 3.0.0]", ""},
		{"from the middle", "1.5.0", "3.0.0", false, "[2.0.0 -> 2.1.0 -> 3.0.0]", ""},
		{"no path names the constraint", "1.0.0", "4.0.0", false, "", `4.0.0 upgrades only from ">= 3.9"`},
		{"downgrade refused", "2.1.0", "2.0.0", false, "", "--allow-downgrade"},
		{"downgrade allowed", "2.1.0", "2.0.0", true, "[2.0.0]", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path, err := PlanPath(all, tt.installed, find(tt.target), tt.downgrade)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := describePath(path); got != tt.want {
				t.Fatalf("path = %s, want %s", got, tt.want)
			}
		})
	}
}

// TestPlanPathNeverYanked: a path that exists only through a yanked
// release is no path.
func TestPlanPathNeverYanked(t *testing.T) {
	rs := []protocol.Release{
		rel("1.0.0", "", false),
		rel("1.1.0", ">= 1.0, < 1.1", true),
		rel("1.2.0", ">= 1.1, < 1.2", false),
	}
	if _, err := PlanPath(rs, "1.0.0", rs[2], false); err == nil {
		t.Fatal("planned a path through a yanked release")
	}
	// Asked for by name, a yanked release is still installable.
	if p, err := PlanPath(rs, "1.0.0", rs[1], false); err != nil || len(p) != 1 {
		t.Fatalf("explicit yanked target: %v %v", p, err)
	}
}
