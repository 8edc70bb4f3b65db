package cli

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/dustin/go-humanize"
	"golang.org/x/term"
)

// progress draws a one-line upload progress indicator on a terminal.
type progress struct {
	w     io.Writer
	total int64 // -1: unknown
	n     int64
	start time.Time
	last  time.Time
	on    bool
}

// minProgress is the smallest upload worth a progress line.
const minProgress = 8 << 20

func newProgress(w io.Writer, total int64, mode string) *progress {
	on := false
	switch mode {
	case "always":
		on = true
	case "never":
	default:
		f, ok := w.(*os.File)
		on = ok && term.IsTerminal(int(f.Fd())) && (total < 0 || total >= minProgress)
	}
	now := time.Now()
	return &progress{w: w, total: total, start: now, on: on}
}

func (p *progress) Write(b []byte) (int, error) {
	p.n += int64(len(b))
	if p.on && time.Since(p.last) > 200*time.Millisecond {
		p.draw()
	}
	return len(b), nil
}

func (p *progress) draw() {
	p.last = time.Now()
	rate := float64(p.n) / max(time.Since(p.start).Seconds(), 0.001)
	if p.total > 0 {
		fmt.Fprintf(p.w, "\ruploading %s / %s  %3d%%  %s/s   ", humanize.IBytes(uint64(p.n)), humanize.IBytes(uint64(p.total)), p.n*100/p.total, humanize.IBytes(uint64(rate)))
	} else {
		fmt.Fprintf(p.w, "\ruploading %s  %s/s   ", humanize.IBytes(uint64(p.n)), humanize.IBytes(uint64(rate)))
	}
}

func (p *progress) done() {
	if p.on {
		p.draw()
		fmt.Fprintln(p.w)
	}
}
