// Package schedule is the arithmetic of maintenance windows and freezes:
// weekly wall-clock ranges in an IANA time zone ("Sat 22:00-Sun 04:00",
// "Mon-Fri 01:00-05:00"), whether one is open at an instant, when it next
// opens and closes, and whether a job may start given the freezes that
// apply.
//
// A window is open while the site's clock shows a time inside one of its
// ranges. Daylight saving follows from that: on the night the clocks go
// forward, a range starting inside the skipped hour opens when the clock
// jumps past it (a range lying wholly inside the skipped hour does not open
// that night); on the night they go back, the repeated hour is inside a
// range both times. Nothing here reads the clock: every function takes the
// instant it answers for.
package schedule

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // zones work on servers without /usr/share/zoneinfo
)

// Limits on what Parse accepts.
const (
	MaxRanges    = 32
	maxRangeText = 64
	maxZoneText  = 64
)

const (
	minutesPerDay  = 24 * 60
	secondsPerWeek = 7 * minutesPerDay * 60
)

// Range is one weekly wall-clock range, as minutes since Sunday 00:00
// (0 to 7*24*60). End before Start means the range crosses the week's end.
type Range struct {
	Start, End int
}

// Contains reports whether second-of-week s is inside [Start, End).
func (r Range) contains(s int) bool {
	start, end := r.Start*60, r.End*60
	if start < end {
		return s >= start && s < end
	}
	return s >= start || s < end
}

func (r Range) String() string {
	f := func(m int) string {
		m %= 7 * minutesPerDay
		return fmt.Sprintf("%s %02d:%02d", dayNames[m/minutesPerDay], m%minutesPerDay/60, m%60)
	}
	return f(r.Start) + "-" + f(r.End)
}

var dayNames = [7]string{"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"}

// Window is a set of weekly ranges in a time zone. A nil *Window is
// always open.
type Window struct {
	Ranges []Range
	Loc    *time.Location
}

// howTo is appended to every range error.
const howTo = `write a weekly range like "Sat 22:00-Sun 04:00" (it may cross midnight and the week's end) or "Mon-Fri 01:00-05:00" (every one of those days)`

var (
	// "Sat 22:00-Sun 04:00"
	spanRe = regexp.MustCompile(`^([A-Za-z]+)\s+(\d{1,2}:\d{2})\s*-\s*([A-Za-z]+)\s+(\d{1,2}:\d{2})$`)
	// "Mon-Fri 01:00-05:00", "Sat 01:00-05:00", "daily 01:00-05:00"
	dailyRe = regexp.MustCompile(`^([A-Za-z]+)(?:\s*-\s*([A-Za-z]+))?\s+(\d{1,2}:\d{2})\s*-\s*(\d{1,2}:\d{2})$`)
)

// ParseRanges parses weekly ranges. Errors name the bad range and say how
// to write it.
func ParseRanges(specs []string) ([]Range, error) {
	if len(specs) == 0 {
		return nil, fmt.Errorf("no weekly range given: %s", howTo)
	}
	if len(specs) > MaxRanges {
		return nil, fmt.Errorf("%d weekly ranges given: give at most %d", len(specs), MaxRanges)
	}
	var out []Range
	for _, spec := range specs {
		rs, err := parseRange(spec)
		if err != nil {
			return nil, err
		}
		out = append(out, rs...)
	}
	return out, nil
}

func parseRange(spec string) ([]Range, error) {
	if len(spec) > maxRangeText {
		return nil, fmt.Errorf("weekly range %.20q... is too long: %s", spec, howTo)
	}
	s := strings.TrimSpace(spec)
	bad := func(why string) error { return fmt.Errorf("weekly range %q: %s: %s", spec, why, howTo) }
	if m := spanRe.FindStringSubmatch(s); m != nil {
		d1, ok1 := parseDay(m[1])
		d2, ok2 := parseDay(m[3])
		if !ok1 || !ok2 {
			return nil, bad("days are Mon, Tue, Wed, Thu, Fri, Sat, Sun")
		}
		t1, ok1 := parseClock(m[2], false)
		t2, ok2 := parseClock(m[4], false)
		if !ok1 || !ok2 {
			return nil, bad("times are HH:MM from 00:00 to 23:59")
		}
		r := Range{Start: d1*minutesPerDay + t1, End: d2*minutesPerDay + t2}
		if r.Start == r.End {
			return nil, bad("it starts where it ends, so it is empty")
		}
		return []Range{r}, nil
	}
	if m := dailyRe.FindStringSubmatch(s); m != nil {
		var days []int
		if strings.EqualFold(m[1], "daily") && m[2] == "" {
			days = []int{0, 1, 2, 3, 4, 5, 6}
		} else {
			d1, ok1 := parseDay(m[1])
			d2, ok2 := d1, true
			if m[2] != "" {
				d2, ok2 = parseDay(m[2])
			}
			if !ok1 || !ok2 {
				return nil, bad("days are Mon, Tue, Wed, Thu, Fri, Sat, Sun (or daily)")
			}
			for d := d1; ; d = (d + 1) % 7 {
				days = append(days, d)
				if d == d2 {
					break
				}
			}
		}
		t1, ok1 := parseClock(m[3], false)
		t2, ok2 := parseClock(m[4], true)
		if !ok1 || !ok2 {
			return nil, bad("times are HH:MM from 00:00 to 23:59 (24:00 as an end)")
		}
		if t1 == t2%minutesPerDay {
			return nil, bad("it starts where it ends, so it is empty")
		}
		length := t2 - t1
		if length < 0 {
			length += minutesPerDay // crosses midnight
		}
		var out []Range
		for _, d := range days {
			start := d*minutesPerDay + t1
			out = append(out, Range{Start: start, End: (start + length) % (7 * minutesPerDay)})
		}
		return out, nil
	}
	return nil, bad("it is not a day and time range")
}

func parseDay(s string) (int, bool) {
	s = strings.ToLower(s)
	for i, n := range dayNames {
		full := strings.ToLower(time.Weekday(i).String())
		if s == strings.ToLower(n) || s == full {
			return i, true
		}
	}
	return 0, false
}

// parseClock parses HH:MM into minutes since midnight; 24:00 only as an end.
func parseClock(s string, end bool) (int, bool) {
	h, m, ok := strings.Cut(s, ":")
	if !ok || len(m) != 2 {
		return 0, false
	}
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if err1 != nil || err2 != nil || hh < 0 || mm < 0 || mm > 59 {
		return 0, false
	}
	if hh == 24 && mm == 0 && end {
		return minutesPerDay, true
	}
	if hh > 23 {
		return 0, false
	}
	return hh*60 + mm, true
}

// LoadZone loads an IANA time zone; "" is UTC. The error says how to
// write one.
func LoadZone(name string) (*time.Location, error) {
	if name == "" {
		return time.UTC, nil
	}
	if len(name) > maxZoneText || name == "Local" || strings.ContainsAny(name, "\\\x00") || strings.HasPrefix(name, "/") || strings.Contains(name, "..") {
		return nil, fmt.Errorf("time zone %.40q is not an IANA zone name: give one like Europe/Berlin, America/New_York or UTC", name)
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("time zone %q is not known: give an IANA zone name like Europe/Berlin, America/New_York or UTC", name)
	}
	return loc, nil
}

// Parse parses weekly ranges in a zone ("" is UTC).
func Parse(specs []string, zone string) (*Window, error) {
	loc, err := LoadZone(zone)
	if err != nil {
		return nil, err
	}
	rs, err := ParseRanges(specs)
	if err != nil {
		return nil, err
	}
	return &Window{Ranges: rs, Loc: loc}, nil
}

// secondOfWeek is t's wall-clock second since Sunday 00:00 in loc.
func secondOfWeek(t time.Time, loc *time.Location) int {
	l := t.In(loc)
	return int(l.Weekday())*minutesPerDay*60 + l.Hour()*3600 + l.Minute()*60 + l.Second()
}

// Open reports whether the window is open at t.
func (w *Window) Open(t time.Time) bool {
	if w == nil {
		return true
	}
	s := secondOfWeek(t, w.Loc)
	for _, r := range w.Ranges {
		if r.contains(s) {
			return true
		}
	}
	return false
}

// horizon is how far NextOpen and NextClose look: a week and a day
// covers every range, the slack any zone change.
const horizon = 9 * 24 * time.Hour

// NextOpen returns the first instant at or after t when the window is
// open: t itself when it is open. The zero time means it does not open
// within the next week (no ranges, or only ranges skipped by a clock
// change).
func (w *Window) NextOpen(t time.Time) time.Time {
	if w.Open(t) {
		return t
	}
	return w.firstWhere(t, func(r Range) int { return r.Start }, w.Open)
}

// NextClose returns the first instant after t when the window is closed:
// t itself when it is closed now. The zero time means it never closes
// (always open, or ranges covering the whole week).
func (w *Window) NextClose(t time.Time) time.Time {
	if w == nil {
		return time.Time{}
	}
	closed := func(x time.Time) bool { return !w.Open(x) }
	if closed(t) {
		return t
	}
	return w.firstWhere(t, func(r Range) int { return r.End }, closed)
}

// firstWhere returns the earliest instant after t at which pred holds,
// given that pred changes only where the clock reaches a range's edge
// (edge picks which) or the zone's offset changes. It tries exactly
// those instants: each edge on each day of the horizon (and the same
// wall-clock time an offset change earlier or later, for the repeated
// hour), and each offset change.
func (w *Window) firstWhere(t time.Time, edge func(Range) int, pred func(time.Time) bool) time.Time {
	var cands []time.Time
	l := t.In(w.Loc)
	day0 := time.Date(l.Year(), l.Month(), l.Day(), 0, 0, 0, 0, w.Loc)
	for d := -1; d <= 8; d++ {
		y, m, dd := day0.AddDate(0, 0, d).Date()
		wd := int(time.Date(y, m, dd, 12, 0, 0, 0, w.Loc).Weekday())
		for _, r := range w.Ranges {
			e := edge(r) % (7 * minutesPerDay)
			if e/minutesPerDay != wd {
				continue
			}
			min := e % minutesPerDay
			c := time.Date(y, m, dd, min/60, min%60, 0, 0, w.Loc)
			cands = append(cands, c, c.Add(-time.Hour), c.Add(time.Hour), c.Add(-30*time.Minute), c.Add(30*time.Minute))
		}
	}
	end := t.Add(horizon)
	for x := t; x.Before(end); {
		_, next := x.In(w.Loc).ZoneBounds()
		if next.IsZero() || !next.After(x) {
			break
		}
		cands = append(cands, next)
		x = next
	}
	slices.SortFunc(cands, func(a, b time.Time) int { return a.Compare(b) })
	for _, c := range cands {
		if c.After(t) && c.Before(end) && pred(c) {
			return c
		}
	}
	return time.Time{}
}

// Freeze forbids starting jobs in [From, To): everywhere, or for one
// client's sites.
type Freeze struct {
	ID     int64
	Client string // "" for server-wide
	From   time.Time
	To     time.Time
	Reason string
}

// Applies reports whether f holds sites of client at t.
func (f Freeze) Applies(client string, t time.Time) bool {
	return (f.Client == "" || f.Client == client) && !t.Before(f.From) && t.Before(f.To)
}

// Decision says whether a job may start now and, if not, why and when it
// next may.
type Decision struct {
	OK bool
	// Reason is why it waits ("" when OK): the window, or the freeze and
	// its reason.
	Reason string
	// Next is when it may start (t when OK); zero when not within the
	// next weeks.
	Next time.Time
	// Freeze is the freeze that holds it, if one does.
	Freeze *Freeze
}

// maxSteps bounds MayStart's search through windows and freezes.
const maxSteps = 64

// MayStart decides whether a job of a site of client may start at t,
// given its window (nil: always open) and the freezes (any client's:
// those of other clients are ignored).
func MayStart(t time.Time, w *Window, client string, freezes []Freeze) Decision {
	var d Decision
	x := t
	for range maxSteps {
		var holding *Freeze
		for i := range freezes {
			if freezes[i].Applies(client, x) && (holding == nil || freezes[i].To.After(holding.To)) {
				holding = &freezes[i]
			}
		}
		if holding != nil {
			if x.Equal(t) {
				d.Freeze = holding
				d.Reason = "frozen until " + holding.To.UTC().Format(time.RFC3339) + ": " + holding.Reason
			}
			x = holding.To
			continue
		}
		if !w.Open(x) {
			next := w.NextOpen(x)
			if x.Equal(t) {
				d.Reason = "waiting for window"
			}
			if next.IsZero() {
				return d
			}
			x = next
			continue
		}
		d.OK = x.Equal(t)
		d.Next = x
		if d.Reason == "waiting for window" {
			d.Reason += ", opens " + x.In(w.Loc).Format("Mon 2006-01-02 15:04 MST")
		}
		return d
	}
	return d
}
