//go:build unix

package publish

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// BenchmarkUploadConn measures UploadConn, the path of a plain HTTP/1.1
// upload with a Content-Length (spliced to the staged file on Linux), on
// the ~256 MiB bundle sent from a file over loopback TCP as the client
// sends it (sendfile): receive, write, hash, scan, fsync, record. cpu-ms/op
// is the process's CPU time (client and server) per upload.
func BenchmarkUploadConn(b *testing.B) {
	data := loadBenchBundle(b)
	src := filepath.Join(b.TempDir(), "bundle.tar.gz")
	if err := os.WriteFile(src, data, 0o644); err != nil {
		b.Fatal(err)
	}
	p := newBenchPublisher(b)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	var cpu time.Duration
	for b.Loop() {
		sent := make(chan error, 1)
		go func() {
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				sent <- err
				return
			}
			defer c.Close()
			f, err := os.Open(src)
			if err != nil {
				sent <- err
				return
			}
			defer f.Close()
			_, err = io.Copy(c, f) // sendfile
			sent <- err
			c.Read(make([]byte, 1)) // until the server closes
		}()
		conn, err := ln.Accept()
		if err != nil {
			b.Fatal(err)
		}
		c0 := cpuTime()
		up, err := p.UploadConn(context.Background(), conn, nil, int64(len(data)), time.Minute, "bench")
		cpu += cpuTime() - c0
		conn.Close()
		if err != nil {
			b.Fatal(err)
		}
		if err := <-sent; err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		os.Remove(p.uploadPath(up.ID))
		b.StartTimer()
	}
	b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N), "cpu-ms/op")
}

// cpuTime is the CPU time (user and system) this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
