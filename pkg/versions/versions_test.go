package versions

import (
	"reflect"
	"strings"
	"testing"

	goversion "github.com/hashicorp/go-version"
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

// TestParsePin: a pin's "~>" names a release line by the parts written
// ("~> 3.2": hot fixes on 3.2 only), unlike go-version's own reading.
func TestParsePin(t *testing.T) {
	tests := []struct {
		pin     string
		norm    string
		admits  []string
		refuses []string
		wantErr bool
	}{
		{pin: "", norm: "", admits: []string{"1.0.0", "9.9.9"}},
		{pin: "~> 3.2", norm: "~> 3.2.0", admits: []string{"3.2.0", "3.2.7"}, refuses: []string{"3.1.9", "3.3.0", "4.0.0"}},
		{pin: "~>3.2", norm: "~> 3.2.0", admits: []string{"3.2.1"}, refuses: []string{"3.3.0"}},
		{pin: "~> 3", norm: "~> 3.0", admits: []string{"3.0.0", "3.9.1"}, refuses: []string{"4.0.0", "2.9.0"}},
		{pin: "~> 3.2.1", norm: "~> 3.2.1", admits: []string{"3.2.1", "3.2.9"}, refuses: []string{"3.2.0", "3.3.0"}},
		{pin: ">= 3.0, < 4.0", norm: ">= 3.0, < 4.0", admits: []string{"3.5.0"}, refuses: []string{"4.0.0"}},
		{pin: "~> 3.2, != 3.2.4", norm: "~> 3.2.0, != 3.2.4", admits: []string{"3.2.3"}, refuses: []string{"3.2.4", "3.3.0"}},
		{pin: "about 3", wantErr: true},
		{pin: "~> ", wantErr: true},
	}
	for _, tt := range tests {
		norm, c, err := ParsePin(tt.pin)
		if tt.wantErr {
			if err == nil || !strings.Contains(err.Error(), "~> 3.2") {
				t.Errorf("ParsePin(%q): %v, want an error showing how to write one", tt.pin, err)
			}
			continue
		}
		if err != nil || norm != tt.norm {
			t.Errorf("ParsePin(%q) = %q, %v; want %q", tt.pin, norm, err, tt.norm)
			continue
		}
		for _, v := range tt.admits {
			if c != nil && !c.Check(mustParse(t, v)) {
				t.Errorf("pin %q refuses %s", tt.pin, v)
			}
		}
		for _, v := range tt.refuses {
			if c.Check(mustParse(t, v)) {
				t.Errorf("pin %q admits %s", tt.pin, v)
			}
		}
	}
}

func mustParse(t *testing.T, v string) *goversion.Version {
	t.Helper()
	pv, err := Parse(v)
	if err != nil {
		t.Fatal(err)
	}
	return pv
}

// FuzzParsePin: a pin from an API body never panics, and a pin it
// accepts is a constraint go-version checks as written out.
func FuzzParsePin(f *testing.F) {
	for _, s := range []string{"", "~> 3.2", "~>3", "~> 3.2.1", ">= 3.0, < 4.0", "~> 3.2, != 3.2.4", "~> 1.0-rc.1", "about 3", "~> ", ",,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, pin string) {
		norm, c, err := ParsePin(pin)
		if err != nil || norm == "" {
			return
		}
		if _, err := goversion.NewConstraint(norm); err != nil || c == nil {
			t.Fatalf("ParsePin(%q) = %q, which go-version refuses: %v", pin, norm, err)
		}
	})
}
