package schedule

import (
	"strings"
	"testing"
	"time"
)

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

// TestWindowAcrossClockChanges: a fixed clock walked across the March and
// October changes in Europe/Berlin (2025-03-30 02:00 CET -> 03:00 CEST,
// 2025-10-26 03:00 CEST -> 02:00 CET) and America/New_York (2025-03-09
// 02:00 EST -> 03:00 EDT, 2025-11-02 02:00 EDT -> 01:00 EST).
func TestWindowAcrossClockChanges(t *testing.T) {
	tests := []struct {
		name      string
		zone      string
		ranges    []string
		at        string
		open      bool
		nextOpen  string // "" when open at at
		nextClose string // "" when closed at at
	}{
		{name: "berlin saturday before opening", zone: "Europe/Berlin", ranges: []string{"Sat 22:00-Sun 04:00"},
			at: "2025-03-29T20:59:00Z", nextOpen: "2025-03-29T21:00:00Z"},
		{name: "berlin march night is an hour shorter", zone: "Europe/Berlin", ranges: []string{"Sat 22:00-Sun 04:00"},
			at: "2025-03-29T21:00:00Z", open: true, nextClose: "2025-03-30T02:00:00Z"},
		{name: "berlin october night is an hour longer", zone: "Europe/Berlin", ranges: []string{"Sat 22:00-Sun 04:00"},
			at: "2025-10-25T20:00:00Z", open: true, nextClose: "2025-10-26T03:00:00Z"},
		{name: "berlin october 03:30 CET is still open", zone: "Europe/Berlin", ranges: []string{"Sat 22:00-Sun 04:00"},
			at: "2025-10-26T02:30:00Z", open: true, nextClose: "2025-10-26T03:00:00Z"},
		{name: "berlin start in the skipped hour opens when the clock jumps", zone: "Europe/Berlin", ranges: []string{"Sun 02:30-03:30"},
			at: "2025-03-30T00:30:00Z", nextOpen: "2025-03-30T01:00:00Z"},
		{name: "berlin jumped-to time is open", zone: "Europe/Berlin", ranges: []string{"Sun 02:30-03:30"},
			at: "2025-03-30T01:00:00Z", open: true, nextClose: "2025-03-30T01:30:00Z"},
		{name: "berlin range wholly in the skipped hour waits a week", zone: "Europe/Berlin", ranges: []string{"Sun 02:00-02:30"},
			at: "2025-03-30T00:30:00Z", nextOpen: "2025-04-06T00:00:00Z"},
		{name: "berlin repeated hour opens first in summer time", zone: "Europe/Berlin", ranges: []string{"Sun 02:15-02:45"},
			at: "2025-10-26T00:00:00Z", nextOpen: "2025-10-26T00:15:00Z"},
		{name: "berlin repeated hour closes after the first pass", zone: "Europe/Berlin", ranges: []string{"Sun 02:15-02:45"},
			at: "2025-10-26T00:20:00Z", open: true, nextClose: "2025-10-26T00:45:00Z"},
		{name: "berlin repeated hour opens again in winter time", zone: "Europe/Berlin", ranges: []string{"Sun 02:15-02:45"},
			at: "2025-10-26T00:50:00Z", nextOpen: "2025-10-26T01:15:00Z"},
		{name: "new york march range over the skipped hour", zone: "America/New_York", ranges: []string{"Sun 01:00-03:00"},
			at: "2025-03-09T06:30:00Z", open: true, nextClose: "2025-03-09T07:00:00Z"},
		{name: "new york november closes at the first 01:30", zone: "America/New_York", ranges: []string{"Sat 23:00-Sun 01:30"},
			at: "2025-11-02T03:00:00Z", open: true, nextClose: "2025-11-02T05:30:00Z"},
		{name: "new york november opens again for the repeated 01:00", zone: "America/New_York", ranges: []string{"Sat 23:00-Sun 01:30"},
			at: "2025-11-02T05:45:00Z", nextOpen: "2025-11-02T06:00:00Z"},
		{name: "new york november repeated half hour is open", zone: "America/New_York", ranges: []string{"Sat 23:00-Sun 01:30"},
			at: "2025-11-02T06:10:00Z", open: true, nextClose: "2025-11-02T06:30:00Z"},
		{name: "new york weekdays skip the weekend and the change", zone: "America/New_York", ranges: []string{"Mon-Fri 01:00-05:00"},
			at: "2025-03-07T10:00:00Z", nextOpen: "2025-03-10T05:00:00Z"},
		{name: "range across the week's end", zone: "UTC", ranges: []string{"Sat 22:00-Mon 02:00"},
			at: "2025-06-08T12:00:00Z", open: true, nextClose: "2025-06-09T02:00:00Z"},
		{name: "daily across midnight", zone: "Asia/Tokyo", ranges: []string{"daily 23:00-01:00"},
			at: "2025-06-08T13:00:00Z", nextOpen: "2025-06-08T14:00:00Z"},
		{name: "several ranges take the earliest", zone: "UTC", ranges: []string{"Fri 01:00-02:00", "Wed 03:00-04:00"},
			at: "2025-06-09T00:00:00Z", nextOpen: "2025-06-11T03:00:00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := Parse(tt.ranges, tt.zone)
			if err != nil {
				t.Fatal(err)
			}
			at := utc(tt.at)
			if got := w.Open(at); got != tt.open {
				t.Fatalf("Open(%s) = %t, want %t", at.In(w.Loc), got, tt.open)
			}
			wantOpen, wantClose := at, at
			if tt.nextOpen != "" {
				wantOpen = utc(tt.nextOpen)
			}
			if tt.nextClose != "" {
				wantClose = utc(tt.nextClose)
			}
			if got := w.NextOpen(at); !got.Equal(wantOpen) {
				t.Errorf("NextOpen = %s (%s), want %s", got.UTC(), got.In(w.Loc), wantOpen)
			}
			if got := w.NextClose(at); !got.Equal(wantClose) {
				t.Errorf("NextClose = %s (%s), want %s", got.UTC(), got.In(w.Loc), wantClose)
			}
		})
	}
}

func TestAlwaysOpen(t *testing.T) {
	var w *Window
	at := utc("2025-01-01T00:00:00Z")
	if !w.Open(at) || !w.NextOpen(at).Equal(at) || !w.NextClose(at).IsZero() {
		t.Fatal("a site without a window must be always open and never close")
	}
	whole, _ := Parse([]string{"Mon 00:00-Thu 00:00", "Thu 00:00-Mon 00:00"}, "UTC")
	if !whole.NextClose(at).IsZero() {
		t.Fatalf("ranges covering the week never close, got %s", whole.NextClose(at))
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name    string
		ranges  []string
		zone    string
		wantErr string
	}{
		{name: "no hour minutes", ranges: []string{"Sat 22-Sun 4"}, wantErr: `weekly range "Sat 22-Sun 4": it is not a day and time range: write a weekly range like "Sat 22:00-Sun 04:00"`},
		{name: "bad day", ranges: []string{"Sam 22:00-Sun 04:00"}, wantErr: `weekly range "Sam 22:00-Sun 04:00": days are Mon, Tue`},
		{name: "bad hour", ranges: []string{"Sat 25:00-Sun 04:00"}, wantErr: `weekly range "Sat 25:00-Sun 04:00": times are HH:MM`},
		{name: "24:00 only as an end", ranges: []string{"Sat 24:00-Sun 04:00"}, wantErr: "times are HH:MM"},
		{name: "empty", ranges: []string{"Sat 10:00-Sat 10:00"}, wantErr: "it starts where it ends"},
		{name: "empty daily", ranges: []string{"Mon-Fri 00:00-24:00"}, wantErr: "it starts where it ends"},
		{name: "none", ranges: nil, wantErr: "no weekly range given"},
		{name: "unknown zone", ranges: []string{"Sat 22:00-Sun 04:00"}, zone: "Europe/Berln", wantErr: `time zone "Europe/Berln" is not known: give an IANA zone name like Europe/Berlin`},
		{name: "local zone", ranges: []string{"Sat 22:00-Sun 04:00"}, zone: "Local", wantErr: "is not an IANA zone name"},
		{name: "path zone", ranges: []string{"Sat 22:00-Sun 04:00"}, zone: "../../etc/passwd", wantErr: "is not an IANA zone name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.ranges, tt.zone)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestParseForms(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{"Sat 22:00-Sun 04:00", "Sat 22:00-Sun 04:00"},
		{"  saturday 22:00 - sunday 4:00 ", "Sat 22:00-Sun 04:00"},
		{"Mon-Wed 01:00-05:00", "Mon 01:00-Mon 05:00,Tue 01:00-Tue 05:00,Wed 01:00-Wed 05:00"},
		{"Fri-Mon 23:00-01:00", "Fri 23:00-Sat 01:00,Sat 23:00-Sun 01:00,Sun 23:00-Mon 01:00,Mon 23:00-Tue 01:00"},
		{"Sat 22:00-24:00", "Sat 22:00-Sun 00:00"},
		{"Sat 01:00-Fri 23:00", "Sat 01:00-Fri 23:00"},
	}
	for _, tt := range tests {
		rs, err := ParseRanges([]string{tt.in})
		if err != nil {
			t.Fatalf("%q: %v", tt.in, err)
		}
		var got []string
		for _, r := range rs {
			got = append(got, r.String())
		}
		if strings.Join(got, ",") != tt.want {
			t.Errorf("%q parsed as %s, want %s", tt.in, strings.Join(got, ","), tt.want)
		}
	}
}

func TestMayStart(t *testing.T) {
	w, _ := Parse([]string{"Sat 22:00-Sun 04:00"}, "Europe/Berlin")
	sat := utc("2025-06-07T21:00:00Z") // Sat 23:00 CEST, open
	tue := utc("2025-06-10T10:00:00Z")
	fz := func(client, from, to, reason string) Freeze {
		return Freeze{Client: client, From: utc(from), To: utc(to), Reason: reason}
	}
	tests := []struct {
		name       string
		at         time.Time
		w          *Window
		client     string
		freezes    []Freeze
		ok         bool
		next       string
		wantReason string
	}{
		{name: "open window", at: sat, w: w, client: "acme", ok: true, next: "2025-06-07T21:00:00Z"},
		{name: "closed window", at: tue, w: w, client: "acme", next: "2025-06-14T20:00:00Z", wantReason: "waiting for window, opens Sat 2025-06-14 22:00 CEST"},
		{name: "server-wide freeze", at: sat, w: w, client: "acme", freezes: []Freeze{fz("", "2025-06-01T00:00:00Z", "2025-06-07T23:00:00Z", "release week")},
			next: "2025-06-07T23:00:00Z", wantReason: "frozen until 2025-06-07T23:00:00Z: release week"},
		{name: "client freeze", at: sat, w: w, client: "acme", freezes: []Freeze{fz("acme", "2025-06-07T00:00:00Z", "2025-06-09T00:00:00Z", "year-end closing")},
			next: "2025-06-14T20:00:00Z", wantReason: "year-end closing"},
		{name: "another client's freeze", at: sat, w: w, client: "acme", freezes: []Freeze{fz("globex", "2025-06-07T00:00:00Z", "2025-06-09T00:00:00Z", "x")},
			ok: true, next: "2025-06-07T21:00:00Z"},
		{name: "freeze ended", at: sat, w: w, client: "acme", freezes: []Freeze{fz("", "2025-06-01T00:00:00Z", "2025-06-07T21:00:00Z", "x")},
			ok: true, next: "2025-06-07T21:00:00Z"},
		{name: "freezes chained", at: tue, w: nil, client: "acme", freezes: []Freeze{
			fz("", "2025-06-10T00:00:00Z", "2025-06-11T00:00:00Z", "a"), fz("acme", "2025-06-10T20:00:00Z", "2025-06-12T00:00:00Z", "b")},
			next: "2025-06-12T00:00:00Z", wantReason: ": a"},
		{name: "always open", at: tue, w: nil, client: "acme", ok: true, next: "2025-06-10T10:00:00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := MayStart(tt.at, tt.w, tt.client, tt.freezes)
			if d.OK != tt.ok || !d.Next.Equal(utc(tt.next)) {
				t.Fatalf("MayStart = ok %t next %s, want ok %t next %s (reason %q)", d.OK, d.Next, tt.ok, tt.next, d.Reason)
			}
			if tt.ok != (d.Reason == "") || !strings.Contains(d.Reason, tt.wantReason) {
				t.Fatalf("reason %q, want it to contain %q", d.Reason, tt.wantReason)
			}
		})
	}
}

func FuzzParseRanges(f *testing.F) {
	for _, s := range []string{"Sat 22:00-Sun 04:00", "Mon-Fri 01:00-05:00", "daily 23:00-24:00", "Sat 22-Sun 4", "Fri-Mon 23:00-01:00", "sun 0:00-sat 23:59"} {
		f.Add(s)
	}
	at := utc("2025-03-29T12:00:00Z")
	f.Fuzz(func(t *testing.T, s string) {
		rs, err := ParseRanges([]string{s})
		if err != nil {
			return
		}
		if len(rs) == 0 || len(rs) > 7 {
			t.Fatalf("%q: %d ranges", s, len(rs))
		}
		for _, r := range rs {
			if r.Start < 0 || r.Start >= 7*minutesPerDay || r.End < 0 || r.End >= 7*minutesPerDay || r.Start == r.End {
				t.Fatalf("%q: range %+v out of the week or empty", s, r)
			}
			again, err := ParseRanges([]string{r.String()})
			if err != nil || len(again) != 1 || again[0] != r {
				t.Fatalf("%q: %s does not parse back: %v %v", s, r, again, err)
			}
		}
		w := &Window{Ranges: rs, Loc: time.UTC}
		if n := w.NextOpen(at); n.IsZero() || !w.Open(n) {
			t.Fatalf("%q: NextOpen %s is not open", s, n)
		}
	})
}
