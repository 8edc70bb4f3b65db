package fleet

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func names(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%d", prefix, i+1)
	}
	return out
}

func TestPlanWaves(t *testing.T) {
	tests := []struct {
		name   string
		sites  []string
		canary []string
		waves  []float64
		want   []int // sizes of the waves
	}{
		{name: "default one wave", sites: names("s", 8), waves: DefaultWaves, want: []int{8}},
		{name: "canary then the rest", sites: names("s", 7), canary: []string{"c1"}, waves: DefaultWaves, want: []int{1, 7}},
		{name: "percentages of all sites, cumulative", sites: names("s", 100), waves: []float64{5, 25, 100}, want: []int{5, 20, 75}},
		{name: "rounded up: 5% of 8 is one site", sites: names("s", 8), waves: []float64{5, 50, 100}, want: []int{1, 3, 4}},
		{name: "canaries count in the percentages", sites: names("s", 6), canary: []string{"c1", "c2"}, waves: []float64{50, 100}, want: []int{2, 2, 4}},
		{name: "a wave the canaries filled is dropped", sites: names("s", 7), canary: []string{"c1", "c2"}, waves: []float64{10, 100}, want: []int{2, 7}},
		{name: "a wave rounding left empty is dropped", sites: names("s", 3), waves: []float64{10, 20, 100}, want: []int{1, 2}},
		{name: "fractions", sites: names("s", 10000), waves: []float64{0.5, 100}, want: []int{50, 9950}},
		{name: "only canaries", canary: []string{"c1"}, waves: DefaultWaves, want: []int{1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := PlanWaves(tt.sites, tt.canary, tt.waves)
			var sizes []int
			var all []string
			for _, w := range got {
				sizes = append(sizes, len(w))
				all = append(all, w...)
			}
			if !reflect.DeepEqual(sizes, tt.want) {
				t.Fatalf("wave sizes %v, want %v", sizes, tt.want)
			}
			if want := append(append([]string{}, tt.canary...), tt.sites...); !reflect.DeepEqual(all, want) {
				t.Errorf("sites in waves %v, want each once, canaries first, in order %v", all, want)
			}
		})
	}
}

func TestParseWaves(t *testing.T) {
	tests := []struct {
		in      string
		want    []float64
		wantErr string
	}{
		{in: "5%,25%,100%", want: []float64{5, 25, 100}},
		{in: "10, 100", want: []float64{10, 100}},
		{in: "100%", want: []float64{100}},
		{in: "0.5%,100%", want: []float64{0.5, 100}},
		{in: "25%,5%,100%", wantErr: "does not follow"},
		{in: "5%,25%", wantErr: "some sites would never upgrade"},
		{in: "5%,5%,100%", wantErr: "does not follow"},
		{in: "0%,100%", wantErr: "does not follow"},
		{in: "150%", wantErr: "does not follow"},
		{in: "half,100%", wantErr: "is not a percentage"},
		{in: "", wantErr: "is not a percentage"},
	}
	for _, tt := range tests {
		got, err := ParseWaves(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseWaves(%q) = %v, %v; want an error with %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseWaves(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestMaxFailures(t *testing.T) {
	tests := []struct {
		limit             string
		failures, started int
		want              bool
	}{
		{"1", 0, 5, false},
		{"1", 1, 1, true},
		{"2", 1, 4, false},
		{"2", 2, 4, true},
		{"10%", 1, 20, false},
		{"10%", 2, 20, true},
		{"10%", 1, 5, true},
		{"50%", 1, 2, true},
		{"100%", 3, 4, false},
	}
	for _, tt := range tests {
		m, err := ParseMaxFailures(tt.limit)
		if err != nil {
			t.Fatal(err)
		}
		if got := m.tripped(tt.failures, tt.started); got != tt.want {
			t.Errorf("max failures %s with %d failures of %d started: tripped %t, want %t", tt.limit, tt.failures, tt.started, got, tt.want)
		}
	}
	for _, bad := range []string{"0", "-1", "1.5", "0%", "101%", "many", "NaN", ""} {
		if _, err := ParseMaxFailures(bad); err == nil {
			t.Errorf("ParseMaxFailures(%q) accepted it", bad)
		}
	}
}

// FuzzPlanWaves: whatever waves and max failures support types, parsing
// never panics, and accepted waves put every site in exactly one wave,
// the canaries first.
func FuzzPlanWaves(f *testing.F) {
	for _, s := range []string{"5%,25%,100%", "100", "0.5%,100%", "25%,5%,100%", "1e-300,100", "NaN,100", "-0,100", ",", "100%,100%"} {
		f.Add(s, "10%", uint16(100), uint8(1))
	}
	f.Fuzz(func(t *testing.T, waves, maxFail string, n uint16, canaries uint8) {
		if m, err := ParseMaxFailures(maxFail); err == nil && m.tripped(0, int(n)) {
			t.Fatalf("max failures %q tripped without a failure", maxFail)
		}
		ws, err := ParseWaves(waves)
		if err != nil {
			return
		}
		sites, canary := names("s", int(n%2000)), names("c", int(canaries%10))
		got := PlanWaves(sites, canary, ws)
		var all []string
		for i, w := range got {
			if len(w) == 0 {
				t.Fatalf("waves %q: wave %d is empty", waves, i)
			}
			all = append(all, w...)
		}
		if want := append(append([]string{}, canary...), sites...); !reflect.DeepEqual(all, want) && len(want) > 0 {
			t.Fatalf("waves %q over %d sites and %d canaries: %d sites placed", waves, len(sites), len(canary), len(all))
		}
	})
}
