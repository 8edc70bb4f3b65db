package versions

import (
	"reflect"
	"testing"
)

func TestEqualAndCompare(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"1.2", "1.2.0", 0},
		{"1.2.0", "1.10.0", -1},
		{"2.0.0", "2.0.0-rc.1", 1},
		{"bogus", "1.0.0", -1},
	}
	for _, tt := range tests {
		if got := Compare(tt.a, tt.b); got != tt.want {
			t.Errorf("Compare(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
		if got := Equal(tt.a, tt.b); got != (tt.want == 0) {
			t.Errorf("Equal(%q, %q) = %v", tt.a, tt.b, got)
		}
	}
}

func TestSortDescending(t *testing.T) {
	vs := []string{"1.2.0", "1.10.0", "1.9.3", "0.1"}
	SortDescending(vs)
	want := []string{"1.10.0", "1.9.3", "1.2.0", "0.1"}
	if !reflect.DeepEqual(vs, want) {
		t.Fatalf("got %v, want %v", vs, want)
	}
}

func TestAdmits(t *testing.T) {
	tests := []struct {
		name, c, v string
		want       bool
		wantErr    bool
	}{
		{"empty admits all", "", "0.0.1", true, false},
		{"in range", ">= 2.0, < 3.0", "2.5.1", true, false},
		{"out of range", ">= 2.0, < 3.0", "3.0.0", false, false},
		{"pessimistic", "~> 3.2", "3.2.9", true, false},
		{"bad constraint", ">> 2", "2.0.0", false, true},
		{"bad version", ">= 1", "one", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Admits(tt.c, tt.v)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}
