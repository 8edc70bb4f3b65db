package publish

import (
	"context"
	"io"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dropless/dropless/pkg/atomicfile"
)

const canSplice = true

// spliceBody moves the body, length bytes of which prefix came first,
// from conn to f through a pipe (socket -> pipe -> file, page references
// rather than copies to user memory), telling ff as each step lands. It
// returns how many bytes it wrote and the first error of the connection,
// the file or the scanner (which stops it).
func spliceBody(ctx context.Context, f *os.File, ff *fileFeed, sb *syncBehind, conn *net.TCPConn, prefix []byte, length int64, idle time.Duration) (int64, error) {
	wb := atomicfile.NewWriteBehind(f, 0)
	n, err := wb.Write(prefix)
	if err != nil {
		return int64(n), err
	}
	done := int64(n)
	if err := ff.Wrote(done); err != nil {
		return done, err
	}
	if done == length {
		return done, nil
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return done, err
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	step := 64 << 10 // the default pipe size
	if sz, err := unix.FcntlInt(uintptr(p[1]), unix.F_SETPIPE_SZ, pipeChunk); err == nil {
		step = sz
	}
	sock, err := conn.SyscallConn()
	if err != nil {
		return done, err
	}
	file, err := f.SyscallConn()
	if err != nil {
		return done, err
	}
	ic := &idleConn{c: conn, idle: idle}
	for done < length {
		if err := ctx.Err(); err != nil {
			return done, err
		}
		ic.extend()
		var got int64
		var serr error
		// The socket is non-blocking: EAGAIN waits for data in Go's poller.
		err := sock.Read(func(fd uintptr) bool {
			got, serr = unix.Splice(int(fd), nil, p[1], nil, int(min(length-done, int64(step))), unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
			return serr != unix.EAGAIN
		})
		if err == nil {
			err = serr
		}
		if err != nil {
			return done, err
		}
		if got == 0 {
			return done, shortBody(done, length)
		}
		for got > 0 {
			var w int64
			var werr error
			file.Write(func(fd uintptr) bool {
				w, werr = unix.Splice(p[0], nil, int(fd), nil, int(got), unix.SPLICE_F_MOVE)
				return true
			})
			if werr != nil {
				return done, werr
			}
			if w == 0 {
				return done, io.ErrShortWrite
			}
			got -= w
			done += w
			wb.Wrote(w)
		}
		sb.Wrote(done)
		if err := ff.Wrote(done); err != nil {
			return done, err
		}
	}
	return done, nil
}
