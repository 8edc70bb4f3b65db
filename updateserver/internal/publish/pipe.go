package publish

import (
	"io"
	"sync"
)

// asyncPipe hands chunks from a writer to a reader goroutine through a
// bounded queue, so that the writer (disk + hash) and the reader (gunzip +
// tar checks) run on different cores instead of taking turns, as io.Pipe's
// synchronous hand-off would make them. Memory is bounded by depth chunks.
type asyncPipe struct {
	ch     chan []byte
	pool   sync.Pool
	cur    []byte // the chunk being read
	buf    []byte // its backing buffer, returned to pool once read
	once   sync.Once
	done   chan struct{}
	mu     sync.Mutex
	rerr   error // set by CloseRead
	closed bool
}

const pipeChunk = 1 << 20

func newAsyncPipe(depth int) *asyncPipe {
	p := &asyncPipe{ch: make(chan []byte, depth), done: make(chan struct{})}
	p.pool.New = func() any { b := make([]byte, pipeChunk); return &b }
	return p
}

// Chunk returns an empty pooled chunk of pipeChunk bytes for the writer to
// fill and hand over with Send.
func (p *asyncPipe) Chunk() []byte {
	return (*p.pool.Get().(*[]byte))[:pipeChunk]
}

// Send queues c, a chunk from Chunk (or a prefix of one), without copying
// it: the reader owns it from then on. It fails with the reader's error
// once the reader gave up.
func (p *asyncPipe) Send(c []byte) error {
	select {
	case p.ch <- c:
		return nil
	case <-p.done:
		return p.readErr()
	}
}

// Write copies b into pooled chunks and queues them. It fails with the
// reader's error once the reader gave up.
func (p *asyncPipe) Write(b []byte) (int, error) {
	n := 0
	for len(b) > 0 {
		c := p.Chunk()
		c = c[:copy(c, b)]
		if err := p.Send(c); err != nil {
			return n, err
		}
		n += len(c)
		b = b[len(c):]
	}
	return n, nil
}

// CloseWrite signals EOF to the reader.
func (p *asyncPipe) CloseWrite() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closed {
		p.closed = true
		close(p.ch)
	}
}

// Read implements io.Reader over the queued chunks.
func (p *asyncPipe) Read(b []byte) (int, error) {
	if len(p.cur) == 0 {
		if p.buf != nil {
			buf := p.buf[:cap(p.buf)]
			p.pool.Put(&buf)
			p.buf = nil
		}
		c, ok := <-p.ch
		if !ok {
			return 0, io.EOF
		}
		p.cur, p.buf = c, c
	}
	n := copy(b, p.cur)
	p.cur = p.cur[n:]
	return n, nil
}

// CloseRead makes pending and future writes fail with err: the reader is
// done (it failed, or it has seen all it needs).
func (p *asyncPipe) CloseRead(err error) {
	p.mu.Lock()
	if err == nil {
		err = io.ErrClosedPipe
	}
	if p.rerr == nil {
		p.rerr = err
	}
	p.mu.Unlock()
	p.once.Do(func() { close(p.done) })
}

func (p *asyncPipe) readErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rerr
}
