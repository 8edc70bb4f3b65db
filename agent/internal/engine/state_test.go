package engine

import "testing"

// Stored state values never change meaning: this table is the journal
// format. Add rows; never edit one.
func TestStateValuesAreStable(t *testing.T) {
	want := map[state]string{
		1: "idle", 2: "downloading", 3: "verified", 4: "preflight", 5: "stopping", 6: "staging",
		7: "backing_up", 8: "migrating", 9: "switching", 10: "starting", 11: "health_check",
		12: "committed", 13: "rolling_back", 14: "rolled_back", 15: "failed",
	}
	for v, name := range want {
		if v.String() != name {
			t.Errorf("state %d is %q, want %q", v, v.String(), name)
		}
		if p, ok := parseState(name); !ok || p != v {
			t.Errorf("parseState(%q) = %d, %v", name, p, ok)
		}
	}
	if len(stateNames) != len(want) {
		t.Errorf("%d states, the table has %d: add the new one here", len(stateNames), len(want))
	}
}
