// Package faketime reads libfaketime's FAKETIME variable, so that a Go
// command can take its reference time from it. libfaketime works by
// LD_PRELOAD over libc's clock functions, which a Go binary does not call:
// `faketime -f +8d updateagent tuf-client ...` (how the TUF conformance
// suite tests expiry) would have no effect unless the command reads
// FAKETIME itself. Only `updateagent tuf-client` does; the agent service
// always uses the real clock.
//
// The formats are libfaketime's:
//
//	+N, -N          offset from the real time, in seconds; N may have a
//	                fraction and one unit suffix: m (minutes), h (hours),
//	                d (days) or y (365 days). The clock keeps running.
//	@YYYY-MM-DD hh:mm:ss   the clock starts at that time and keeps running
//	YYYY-MM-DD hh:mm:ss    the clock is frozen at that time
//
// Seconds may carry a fraction ("hh:mm:ss.5"). Absolute times are read in
// the local time zone, as libfaketime's mktime does: the zone TZ names, UTC
// when TZ is set but empty, and the system's zone (/etc/localtime, UTC in
// most containers) when TZ is not set. That is Go's time.Local on Unix;
// Parse takes the zone as an argument so that tests can fix it.
//
// libfaketime's other forms (the x speed and i increment modifiers, "%"
// with FAKETIME_FOLLOW_FILE, a custom FAKETIME_FMT) are refused with an
// error rather than silently read as something else.
package faketime

import (
	"fmt"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Env is the environment variable libfaketime reads.
const Env = "FAKETIME"

// Clock is a fake wall clock, set from a FAKETIME value.
type Clock struct {
	start  time.Time // the fake time when the value was read
	real   time.Time // the real time then
	frozen bool
}

// Start is the fake time when the FAKETIME value was read.
func (c Clock) Start() time.Time { return c.start }

// Frozen reports whether the clock stands still (an absolute time without
// "@").
func (c Clock) Frozen() bool { return c.frozen }

// Now is the fake time now: Start, plus the real time elapsed since the
// value was read unless the clock is frozen.
func (c Clock) Now() time.Time {
	if c.frozen {
		return c.start
	}
	return c.start.Add(time.Since(c.real))
}

// Error is a FAKETIME value this package cannot read. Its message is one
// line that quotes the value and says what is expected.
type Error struct {
	Value string
	Msg   string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s=%q %s", Env, e.Value, e.Msg)
}

const want = `is not a libfaketime time: use +N or -N seconds (with an optional m, h, d or y suffix), "@YYYY-MM-DD hh:mm:ss" or "YYYY-MM-DD hh:mm:ss"`

var (
	reOffset   = regexp.MustCompile(`^([+-])([0-9]+)?(?:\.([0-9]*))?([mhdy]?)$`)
	reAbsolute = regexp.MustCompile(`^([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})\s+([0-9]{1,2}):([0-9]{1,2}):([0-9]{1,2})(?:\.([0-9]+))?$`)
)

var units = map[string]time.Duration{
	"":  time.Second,
	"m": time.Minute,
	"h": time.Hour,
	"d": 24 * time.Hour,
	"y": 365 * 24 * time.Hour,
}

// Parse reads a FAKETIME value at real time now; absolute times are in
// loc. Surrounding white space is ignored; an empty value is an error (a
// caller treats an empty FAKETIME as unset, as libfaketime does).
func Parse(value string, now time.Time, loc *time.Location) (Clock, error) {
	s := strings.TrimSpace(value)
	bad := func(msg string) (Clock, error) { return Clock{}, &Error{Value: value, Msg: msg} }
	if s == "" {
		return bad(want)
	}
	// libfaketime's modifiers follow the time after white space: "+2d x2",
	// "@2024-01-02 03:04:05 i1".
	if f := strings.Fields(s); len(f) > 1 && (f[len(f)-1][0] == 'x' || f[len(f)-1][0] == 'i') {
		return bad("has a speed (x) or increment (i) modifier, which updateagent does not support: remove it")
	}
	switch s[0] {
	case '+', '-':
		d, err := parseOffset(s)
		if err != "" {
			return bad(err)
		}
		return Clock{start: now.Add(d), real: now}, nil
	case '@':
		t, err := parseAbsolute(strings.TrimSpace(s[1:]), loc)
		if err != "" {
			return bad(err)
		}
		return Clock{start: t, real: now}, nil
	case '%':
		return bad("follows a file (FAKETIME_FOLLOW_FILE), which updateagent does not support: give an offset or a time")
	case 'x', 'i':
		return bad("sets only a speed or an increment, which updateagent does not support: give an offset or a time")
	}
	t, err := parseAbsolute(s, loc)
	if err != "" {
		return bad(err)
	}
	return Clock{start: t, real: now, frozen: true}, nil
}

// parseOffset reads "+N[unit]" or "-N[unit]". It returns an explanation
// when s is not one.
func parseOffset(s string) (time.Duration, string) {
	m := reOffset.FindStringSubmatch(s)
	if m == nil || m[2] == "" && m[3] == "" {
		return 0, want
	}
	unit := units[m[4]]
	var d time.Duration
	if m[2] != "" {
		n, err := strconv.ParseInt(m[2], 10, 64)
		if err != nil || n > math.MaxInt64/int64(unit) {
			return 0, "is too far from now: the offset must be within about 290 years"
		}
		d = time.Duration(n) * unit
	}
	if m[3] != "" {
		f, err := strconv.ParseFloat("0."+m[3], 64)
		if err != nil {
			return 0, want
		}
		frac := time.Duration(math.Round(f * float64(unit)))
		if d > math.MaxInt64-frac {
			return 0, "is too far from now: the offset must be within about 290 years"
		}
		d += frac
	}
	if m[1] == "-" {
		d = -d
	}
	return d, ""
}

// parseAbsolute reads "YYYY-MM-DD hh:mm:ss[.frac]" in loc, refusing
// dates that do not exist. It returns an explanation when s is not one.
func parseAbsolute(s string, loc *time.Location) (time.Time, string) {
	m := reAbsolute.FindStringSubmatch(s)
	if m == nil {
		return time.Time{}, want
	}
	var n [6]int
	for i := range n {
		n[i], _ = strconv.Atoi(m[i+1]) // at most 4 digits each
	}
	year, month, day, hour, minute, sec := n[0], n[1], n[2], n[3], n[4], n[5]
	if month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || sec > 60 {
		return time.Time{}, "is not a valid date and time"
	}
	// A day past the month's end (2023-02-30) does not exist; time.Date
	// would move it into the next month.
	if last := time.Date(year, time.Month(month)+1, 0, 0, 0, 0, 0, time.UTC).Day(); day > last {
		return time.Time{}, "is not a valid date and time"
	}
	var nsec int
	if m[7] != "" {
		f, _ := strconv.ParseFloat("0."+m[7], 64)
		nsec = int(math.Round(f * 1e9))
	}
	return time.Date(year, time.Month(month), day, hour, minute, sec, nsec, loc), ""
}

// FromEnv reads FAKETIME from the environment, at the real time now, with
// absolute times in time.Local. ok is false when FAKETIME is not set or
// empty: the real clock applies. A value Parse refuses is an *Error, as is
// an absolute time with FAKETIME_FMT set to another format than the
// default (updateagent reads only the default one).
func FromEnv() (c Clock, ok bool, err error) {
	v := os.Getenv(Env)
	if strings.TrimSpace(v) == "" {
		return Clock{}, false, nil
	}
	s := strings.TrimPrefix(strings.TrimSpace(v), "@")
	if f := os.Getenv("FAKETIME_FMT"); f != "" && f != "%Y-%m-%d %H:%M:%S" && s != "" && s[0] != '+' && s[0] != '-' {
		return Clock{}, false, &Error{Value: v, Msg: fmt.Sprintf("comes with FAKETIME_FMT=%q, which updateagent does not support: use the default format YYYY-MM-DD hh:mm:ss", f)}
	}
	c, err = Parse(v, time.Now(), time.Local)
	if err != nil {
		return Clock{}, false, err
	}
	return c, true, nil
}
