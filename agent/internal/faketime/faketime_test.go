package faketime

import (
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		in         string
		loc        *time.Location // default UTC
		want       time.Time
		wantFrozen bool
		wantErr    string // in the error, "" for success
	}{
		{name: "seconds", in: "+691200", want: now.Add(691200 * time.Second)},
		{name: "negative seconds", in: "-120", want: now.Add(-2 * time.Minute)},
		{name: "zero", in: "+0", want: now},
		{name: "minutes", in: "+30m", want: now.Add(30 * time.Minute)},
		{name: "hours back", in: "-2h", want: now.Add(-2 * time.Hour)},
		{name: "days (faketime -f +8d)", in: "+8d", want: now.Add(8 * 24 * time.Hour)},
		{name: "years of 365 days", in: "+1y", want: now.Add(365 * 24 * time.Hour)},
		{name: "fraction", in: "+1.5h", want: now.Add(90 * time.Minute)},
		{name: "fraction only", in: "-.5d", want: now.Add(-12 * time.Hour)},
		{name: "trailing dot", in: "+2.d", want: now.Add(48 * time.Hour)},
		{name: "white space around", in: "  +8d\n", want: now.Add(8 * 24 * time.Hour)},
		{name: "start at, UTC", in: "@2030-01-02 03:04:05", want: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)},
		{name: "frozen, UTC", in: "2030-01-02 03:04:05", want: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC), wantFrozen: true},
		{name: "frozen, in TZ's zone", in: "2030-07-01 12:00:00", loc: berlin, want: time.Date(2030, 7, 1, 10, 0, 0, 0, time.UTC), wantFrozen: true},
		{name: "start at, in TZ's zone", in: "@2030-01-01 12:00:00", loc: berlin, want: time.Date(2030, 1, 1, 11, 0, 0, 0, time.UTC)},
		{name: "one-digit fields, as strptime allows", in: "2030-1-2 3:4:5", want: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC), wantFrozen: true},
		{name: "fractional seconds", in: "@2030-01-02 03:04:05.25", want: time.Date(2030, 1, 2, 3, 4, 5, 250e6, time.UTC)},
		{name: "leap day", in: "2028-02-29 00:00:00", want: time.Date(2028, 2, 29, 0, 0, 0, 0, time.UTC), wantFrozen: true},

		{name: "empty", in: "", wantErr: "is not a libfaketime time"},
		{name: "no sign", in: "691200", wantErr: "is not a libfaketime time"},
		{name: "sign only", in: "+", wantErr: "is not a libfaketime time"},
		{name: "unknown unit", in: "+8w", wantErr: "is not a libfaketime time"},
		{name: "two units", in: "+8dh", wantErr: "is not a libfaketime time"},
		{name: "space inside", in: "+ 8d", wantErr: "is not a libfaketime time"},
		{name: "words", in: "tomorrow", wantErr: "is not a libfaketime time"},
		{name: "date only", in: "2030-01-02", wantErr: "is not a libfaketime time"},
		{name: "ISO 8601 T", in: "2030-01-02T03:04:05Z", wantErr: "is not a libfaketime time"},
		{name: "at without time", in: "@", wantErr: "is not a libfaketime time"},
		{name: "no such day", in: "2023-02-29 00:00:00", wantErr: "is not a valid date and time"},
		{name: "no such hour", in: "@2030-01-02 24:00:00", wantErr: "is not a valid date and time"},
		{name: "no such month", in: "2030-13-01 00:00:00", wantErr: "is not a valid date and time"},
		{name: "too far", in: "+300y", wantErr: "too far from now"},
		{name: "speed modifier", in: "+2d x2", wantErr: "speed (x) or increment (i) modifier"},
		{name: "increment modifier", in: "@2030-01-02 03:04:05 i1.5", wantErr: "speed (x) or increment (i) modifier"},
		{name: "modifier alone", in: "x2", wantErr: "does not support"},
		{name: "follow a file", in: "%", wantErr: "FAKETIME_FOLLOW_FILE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			loc := tt.loc
			if loc == nil {
				loc = time.UTC
			}
			c, err := Parse(tt.in, now, loc)
			if tt.wantErr != "" {
				var fe *Error
				if !errors.As(err, &fe) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse(%q) = %v, want an error containing %q", tt.in, err, tt.wantErr)
				}
				if !strings.HasPrefix(err.Error(), "FAKETIME=") || strings.Contains(err.Error(), "\n") {
					t.Errorf("error %q: want one line naming FAKETIME", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			if !c.Start().Equal(tt.want) || c.Frozen() != tt.wantFrozen {
				t.Errorf("Parse(%q) = %v (frozen %v), want %v (frozen %v)", tt.in, c.Start().UTC(), c.Frozen(), tt.want.UTC(), tt.wantFrozen)
			}
		})
	}
}

// TestClockRuns: relative and "@" clocks advance with the real time, a
// plain absolute time stands still.
func TestClockRuns(t *testing.T) {
	now := time.Now()
	for _, in := range []string{"+1d", "@2030-01-02 03:04:05"} {
		c, err := Parse(in, now, time.UTC)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Now().Sub(c.Start()); got < 0 || got > time.Minute {
			t.Errorf("%q: Now is %v after Start", in, got)
		}
		time.Sleep(2 * time.Millisecond)
		if !c.Now().After(c.Start()) {
			t.Errorf("%q: the clock does not run", in)
		}
	}
	c, err := Parse("2030-01-02 03:04:05", now, time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Millisecond)
	if !c.Now().Equal(c.Start()) {
		t.Errorf("frozen clock moved")
	}
}

func TestFromEnv(t *testing.T) {
	t.Setenv("FAKETIME_FMT", "")
	t.Setenv(Env, "")
	if _, ok, err := FromEnv(); ok || err != nil {
		t.Errorf("empty FAKETIME: ok %v, err %v; want the real clock", ok, err)
	}
	t.Setenv(Env, "+8d")
	c, ok, err := FromEnv()
	if !ok || err != nil {
		t.Fatalf("FAKETIME=+8d: ok %v, err %v", ok, err)
	}
	if d := time.Until(c.Now()); d < 8*24*time.Hour-time.Minute || d > 8*24*time.Hour+time.Minute {
		t.Errorf("FAKETIME=+8d: Now is %v from now", d)
	}
	t.Setenv(Env, "next week")
	if _, _, err := FromEnv(); err == nil {
		t.Errorf("FAKETIME=next week: no error")
	}
	t.Setenv(Env, "2030-01-02 03:04:05")
	t.Setenv("FAKETIME_FMT", "%s")
	if _, _, err := FromEnv(); err == nil || !strings.Contains(err.Error(), "FAKETIME_FMT") {
		t.Errorf("FAKETIME_FMT=%%s: %v, want an error naming FAKETIME_FMT", err)
	}
}

// FuzzParse: Parse never panics, and what it accepts has a sign, an "@"
// or a date in front. Seeded from TestParse.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"+691200", "-2h", "+8d", "+1.5h", "@2030-01-02 03:04:05", "2030-01-02 03:04:05.25", "+300y", "+2d x2", "%", ""} {
		f.Add(s)
	}
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		_, err := Parse(s, now, time.UTC)
		if err != nil {
			return
		}
		v := strings.TrimSpace(s)
		if v[0] != '+' && v[0] != '-' && v[0] != '@' && (v[0] < '0' || v[0] > '9') {
			t.Fatalf("Parse accepted %q", s)
		}
	})
}

// TestAgainstLibfaketime compares Parse with libfaketime itself, when its
// faketime wrapper is installed (the Debian package faketime): the time
// `date` sees under FAKETIME is the time Parse gives.
func TestAgainstLibfaketime(t *testing.T) {
	if _, err := exec.LookPath("faketime"); err != nil {
		t.Skip("libfaketime's faketime command is not installed")
	}
	if _, err := exec.LookPath("date"); err != nil {
		t.Skip("no date command")
	}
	for _, tz := range []string{"UTC", "Asia/Tokyo"} {
		loc, err := time.LoadLocation(tz)
		if err != nil {
			t.Skipf("no zone %s: %v", tz, err)
		}
		for _, spec := range []string{"+691200", "-2h", "+8d", "+1.5h", "+1y", "+30m", "@2030-01-02 03:04:05", "2030-01-02 03:04:05", "2030-1-2 3:4:5"} {
			now := time.Now()
			c, err := Parse(spec, now, loc)
			if err != nil {
				t.Fatalf("Parse(%q): %v", spec, err)
			}
			cmd := exec.Command("faketime", "-f", spec, "date", "+%s")
			cmd.Env = append(os.Environ(), "TZ="+tz)
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("faketime -f %q date: %v", spec, err)
			}
			got, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
			if err != nil {
				t.Fatalf("faketime -f %q date: %q", spec, out)
			}
			if d := got - c.Start().Unix(); d < -2 || d > 2 {
				t.Errorf("TZ=%s FAKETIME=%q: libfaketime says %d, Parse %d", tz, spec, got, c.Start().Unix())
			}
		}
	}
}
