package proc

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
)

// Lines logs what a child writes, one record per line (Msg, with the
// line as "line"), and keeps its last non-empty lines. A line longer than
// Max bytes is cut there; the rest of it is skipped.
type Lines struct {
	Log   *slog.Logger
	Level slog.Level // of the records; zero is Info
	Msg   string     // e.g. "output"
	Max   int        // bytes of a line logged; at least 16
	Keep  int        // how many non-empty lines Last returns; 0 means 1

	mu   sync.Mutex
	last []string
}

// Copy logs r line by line until it ends or fails.
func (l *Lines) Copy(r io.Reader) {
	keep := max(l.Keep, 1)
	br := bufio.NewReaderSize(r, l.Max)
	for {
		line, isPrefix, err := br.ReadLine()
		if len(line) > 0 || (err == nil && !isPrefix) {
			s := strings.TrimRight(string(line), "\r")
			l.Log.Log(context.Background(), l.Level, l.Msg, "line", s)
			if s = strings.TrimSpace(s); s != "" {
				l.mu.Lock()
				l.last = append(l.last, s)
				if len(l.last) > keep {
					l.last = l.last[len(l.last)-keep:]
				}
				l.mu.Unlock()
			}
		}
		// Skip the rest of an overlong line.
		for isPrefix && err == nil {
			_, isPrefix, err = br.ReadLine()
		}
		if err != nil {
			return
		}
	}
}

// Last returns the last non-empty lines kept (at most Keep), oldest
// first, each without leading and trailing space.
func (l *Lines) Last() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.last...)
}

// LastLine returns the last non-empty line, "" when there was none.
func (l *Lines) LastLine() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.last) == 0 {
		return ""
	}
	return l.last[len(l.last)-1]
}
