package protocol

import (
	"strings"
	"testing"
	"time"
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

var parseSinceTests = []struct {
	name, in string
	want     time.Time
	wantErr  bool
}{
	{"hours", "24h", sinceNow.Add(-24 * time.Hour), false},
	{"minutes", "90m", sinceNow.Add(-90 * time.Minute), false},
	{"days", "7d", sinceNow.Add(-7 * 24 * time.Hour), false},
	{"RFC 3339", "2025-06-01T00:00:00Z", time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC), false},
	{"RFC 3339 with fraction and offset", "2025-06-01T02:00:00.5+02:00", time.Date(2025, 6, 1, 0, 0, 0, 5e8, time.UTC), false},
	{"a time in the future", "2999-01-01T00:00:00Z", time.Date(2999, 1, 1, 0, 0, 0, 0, time.UTC), false},
	{"negative", "-1h", time.Time{}, true},
	{"zero", "0s", time.Time{}, true},
	{"zero days", "0d", time.Time{}, true},
	{"negative days", "-2d", time.Time{}, true},
	{"fractional days", "1.5d", time.Time{}, true},
	{"too many days", "99999999d", time.Time{}, true},
	{"a date only", "2025-06-01", time.Time{}, true},
	{"words", "yesterday", time.Time{}, true},
	{"empty", "", time.Time{}, true},
	{"no unit", "24", time.Time{}, true},
}

var sinceNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func TestParseSince(t *testing.T) {
	for _, tt := range parseSinceTests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSince(tt.in, sinceNow)
			if tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), "24h") || !strings.Contains(err.Error(), "RFC 3339") {
					t.Fatalf("ParseSince(%q) = %v, %v: want an error with examples", tt.in, got, err)
				}
				return
			}
			if err != nil || !got.Equal(tt.want) {
				t.Fatalf("ParseSince(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
		})
	}
}

// FuzzParseSince: since comes from the query string: no input panics, and
// a duration never reaches into the future.
func FuzzParseSince(f *testing.F) {
	for _, tt := range parseSinceTests {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseSince(s, sinceNow)
		if err == nil && !strings.Contains(s, "T") && !got.Before(sinceNow) {
			t.Fatalf("duration %q reaches %v, not before now", s, got)
		}
	})
}
