package publish

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/fault"
)

// UploadConn is Upload for a body of length bytes that arrives on conn
// (a hijacked HTTP/1.1 connection), prefix being the part of it the HTTP
// server had already read. On Linux, from a TCP connection, the bytes go
// from the socket to the staged file with splice(2), never through user
// memory; the scanner reads them back from the page cache as they land,
// and hands what it read to a hasher of its own (fileFeed).
// The receive side was half of the server's CPU during an upload, mostly
// the kernel copying socket data out to the process. A stall longer than
// idle fails the upload; so does a connection that ends early.
func (p *Publisher) UploadConn(ctx context.Context, conn net.Conn, prefix []byte, length int64, idle time.Duration, actor string) (protocol.Upload, error) {
	if length > p.MaxUpload {
		return protocol.Upload{}, fault.New(fault.TooLarge, "the bundle (%d bytes) is larger than this server accepts (%d bytes): raise serve --max-bundle-size or make the bundle smaller", length, p.MaxUpload)
	}
	prefix = prefix[:min(int64(len(prefix)), length)]
	tc, ok := conn.(*net.TCPConn)
	if !ok || !CanSplice {
		body := io.MultiReader(bytes.NewReader(prefix), &idleConn{c: conn, idle: idle})
		return p.Upload(ctx, &exactReader{r: io.LimitReader(body, length), want: length}, actor)
	}
	ff := newFileFeed()
	return p.stage(ctx, actor, ff, func(f *os.File, sb *syncBehind) (int64, error) {
		ff.f = f
		return spliceBody(ctx, f, ff, sb, tc, prefix, length, idle)
	})
}

// CanSplice tells whether UploadConn moves bytes with splice(2) here.
const CanSplice = canSplice

// shortBody is the error of a connection that ended before the body did.
func shortBody(got, want int64) error {
	return fault.New(fault.Invalid, "the upload ended after %d of the %d bytes its Content-Length announced: the connection was closed early; send the bundle again", got, want)
}

// exactReader fails with shortBody when r ends before want bytes.
type exactReader struct {
	r         io.Reader
	got, want int64
}

func (e *exactReader) Read(b []byte) (int, error) {
	n, err := e.r.Read(b)
	e.got += int64(n)
	if err == io.EOF && e.got < e.want {
		err = shortBody(e.got, e.want)
	}
	return n, err
}

// idleConn reads a connection, pushing its read deadline idle ahead at
// most once a second.
type idleConn struct {
	c    net.Conn
	idle time.Duration
	last time.Time
}

func (ic *idleConn) Read(b []byte) (int, error) {
	ic.extend()
	return ic.c.Read(b)
}

func (ic *idleConn) extend() {
	if now := time.Now(); now.Sub(ic.last) > time.Second {
		ic.last = now
		ic.c.SetReadDeadline(now.Add(ic.idle))
	}
}

// fileFeed hands the scanner what a receiver wrote to a file, reading it
// back (from the page cache) a chunk at a time once a whole chunk, or the
// rest, is there, and hashes what it read back on a goroutine of its own:
// the sha256 (about 1 s of CPU per GiB) runs on another core than the
// scan, sharing its chunks rather than reading the file a second time.
type fileFeed struct {
	f    *os.File
	mu   sync.Mutex
	cond *sync.Cond
	end  int64 // the file holds [0, end)
	eof  bool  // the receiver is done
	rerr error // set by CloseRead
	need int64 // the end the reader waits for (0: it does not wait)
	off  int64 // the next byte to read back (reader only)

	free  chan *chunk // chunks to read into
	hashq chan *chunk // chunks read, in order, for the hasher
	c     *chunk      // the chunk being read (reader only)
	cur   []byte      // what it still holds for Read
	once  sync.Once
	sum   chan []byte
}

// fileFeedChunks is how many chunks the hasher may lag behind the scanner.
const fileFeedChunks = 4

// chunk is a chunk read back, shared by the scanner and the hasher.
type chunk struct {
	buf  []byte
	n    int          // how many bytes of buf it holds
	refs atomic.Int32 // readers not done with it yet
}

func newFileFeed() *fileFeed {
	ff := &fileFeed{
		free:  make(chan *chunk, fileFeedChunks),
		hashq: make(chan *chunk, fileFeedChunks),
		sum:   make(chan []byte, 1),
	}
	ff.cond = sync.NewCond(&ff.mu)
	mem := make([]byte, fileFeedChunks*pipeChunk)
	for i := range fileFeedChunks {
		ff.free <- &chunk{buf: mem[i*pipeChunk : (i+1)*pipeChunk : (i+1)*pipeChunk]}
	}
	go func() {
		h := sha256.New()
		for c := range ff.hashq {
			h.Write(c.buf[:c.n])
			ff.release(c)
		}
		ff.sum <- h.Sum(nil)
	}()
	return ff
}

func (ff *fileFeed) release(c *chunk) {
	if c.refs.Add(-1) == 0 {
		ff.free <- c
	}
}

// Sum returns the sha256 of what the reader read, once CloseRead was
// called.
func (ff *fileFeed) Sum() []byte { return <-ff.sum }

// Wrote tells that the file now holds end bytes, waking the reader once
// what it waits for is there: once per chunk, not at every splice.
// It fails with the reader's error once the reader gave up.
func (ff *fileFeed) Wrote(end int64) error {
	ff.mu.Lock()
	defer ff.mu.Unlock()
	if ff.rerr != nil {
		return ff.rerr
	}
	ff.end = end
	if ff.need != 0 && end >= ff.need {
		ff.need = 0
		ff.cond.Signal()
	}
	return nil
}

func (ff *fileFeed) CloseWrite() {
	ff.mu.Lock()
	ff.eof = true
	ff.mu.Unlock()
	ff.cond.Broadcast()
}

// CloseRead tells that the reader is done; it ends the hashing. Only the
// reader calls it.
func (ff *fileFeed) CloseRead(err error) {
	if err == nil {
		err = io.ErrClosedPipe
	}
	ff.mu.Lock()
	if ff.rerr == nil {
		ff.rerr = err
	}
	ff.mu.Unlock()
	ff.once.Do(func() {
		if ff.c != nil {
			ff.release(ff.c)
			ff.c, ff.cur = nil, nil
		}
		close(ff.hashq)
	})
}

func (ff *fileFeed) Read(b []byte) (int, error) {
	if len(ff.cur) == 0 {
		if ff.c != nil {
			ff.release(ff.c)
			ff.c = nil
		}
		ff.mu.Lock()
		for ff.end-ff.off < pipeChunk && !ff.eof {
			ff.need = ff.off + pipeChunk
			ff.cond.Wait()
		}
		k := min(ff.end-ff.off, pipeChunk)
		ff.mu.Unlock()
		if k == 0 {
			return 0, io.EOF
		}
		c := <-ff.free
		if _, err := ff.f.ReadAt(c.buf[:k], ff.off); err != nil {
			ff.free <- c
			return 0, err
		}
		ff.off += k
		c.n = int(k)
		c.refs.Store(2)
		ff.hashq <- c // never blocks: it holds every chunk there is
		ff.c, ff.cur = c, c.buf[:k]
	}
	n := copy(b, ff.cur)
	ff.cur = ff.cur[n:]
	return n, nil
}
