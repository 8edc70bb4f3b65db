package proc

import (
	"bytes"
	"log/slog"
	"slices"
	"strings"
	"testing"
)

// Lines logs every line of a child's output, cuts overlong ones, and
// keeps the last non-empty lines for the error that names the child.
func TestLines(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		keep     int
		wantLast []string
		wantLog  []string // the "line" of each record
	}{
		{name: "empty"},
		{name: "one line without newline", in: "ready", wantLast: []string{"ready"}, wantLog: []string{"ready"}},
		{name: "last non-empty", in: "a\n  b  \n\n", wantLast: []string{"b"}, wantLog: []string{"a", "  b  ", ""}},
		{name: "keep three", in: "1\n2\r\n3\n4\n", keep: 3, wantLast: []string{"2", "3", "4"}, wantLog: []string{"1", "2", "3", "4"}},
		{name: "overlong line cut", in: strings.Repeat("x", 40) + "\nok\n", keep: 2, wantLast: []string{strings.Repeat("x", 16), "ok"}, wantLog: []string{strings.Repeat("x", 16), "ok"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			l := &Lines{Log: slog.New(slog.NewJSONHandler(&buf, nil)), Msg: "output", Max: 16, Keep: tt.keep}
			l.Copy(strings.NewReader(tt.in))
			if got := l.Last(); !slices.Equal(got, tt.wantLast) {
				t.Errorf("Last = %q, want %q", got, tt.wantLast)
			}
			want := ""
			if len(tt.wantLast) > 0 {
				want = tt.wantLast[len(tt.wantLast)-1]
			}
			if got := l.LastLine(); got != want {
				t.Errorf("LastLine = %q, want %q", got, want)
			}
			var logged []string
			for _, rec := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
				if rec == "" {
					continue
				}
				_, v, _ := strings.Cut(rec, `"line":`)
				logged = append(logged, strings.Trim(strings.TrimSuffix(v, "}"), `"`))
			}
			if !slices.Equal(logged, tt.wantLog) {
				t.Errorf("logged lines %q, want %q", logged, tt.wantLog)
			}
		})
	}
}
