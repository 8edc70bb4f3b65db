package protocol

import (
	"strings"
	"testing"
)

func TestParseTargetCustom(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    TargetCustom
		wantErr string
	}{
		{"full", `{"product":"acme-erp","version":"1.2.0","upgrade_from":">= 1.0"}`, TargetCustom{"acme-erp", "1.2.0", ">= 1.0"}, ""},
		{"unknown fields ignored", `{"product":"p","version":"1","future":[1,2]}`, TargetCustom{Product: "p", Version: "1"}, ""},
		{"empty", ``, TargetCustom{}, "no custom metadata"},
		{"no version", `{"product":"p"}`, TargetCustom{}, "lacks product or version"},
		{"not JSON", `{"product":`, TargetCustom{}, "not valid"},
		{"wrong type", `{"product":1,"version":"1"}`, TargetCustom{}, "not valid"},
		{"too large", `{"product":"` + strings.Repeat("a", 5000) + `","version":"1"}`, TargetCustom{}, "more than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseTargetCustom([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

// FuzzParseTargetCustom: custom metadata comes from the network (verified
// by TUF first, but parsed defensively anyway): no input may panic, and
// what parses has a product and a version.
func FuzzParseTargetCustom(f *testing.F) {
	for _, s := range []string{
		`{"product":"acme-erp","version":"1.2.0","upgrade_from":">= 1.0"}`,
		`{"product":"p"}`, `null`, `[]`, `{"product":"\u0000","version":"\ud800"}`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, err := ParseTargetCustom(raw)
		if err == nil && (c.Product == "" || c.Version == "") {
			t.Fatalf("accepted %q without product or version", raw)
		}
	})
}
