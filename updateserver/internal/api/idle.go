package api

import (
	"io"
	"net/http"
	"time"
)

// idleReader reads a long request body, pushing the connection's read
// deadline forward as bytes arrive: a multi-GB upload may take as long as
// it needs, but a stalled one is cut after idle.
type idleReader struct {
	r    io.Reader
	rc   *http.ResponseController
	idle time.Duration
	last time.Time
}

func (ir *idleReader) extend() {
	ir.last = time.Now()
	ir.rc.SetReadDeadline(ir.last.Add(ir.idle))
}

func (ir *idleReader) Read(b []byte) (int, error) {
	n, err := ir.r.Read(b)
	// Setting a deadline costs a little; once a second is plenty.
	if n > 0 && time.Since(ir.last) > time.Second {
		ir.extend()
	}
	return n, err
}
