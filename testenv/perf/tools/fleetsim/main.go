// Command fleetsim holds many simulated agents in long-poll check-ins
// (POST /api/v1/agent/checkin?wait=N, the real agent protocol) against an
// update server and, at each level of held connections, measures the
// server's memory and file descriptors, the latency of fresh non-waiting
// check-ins made meanwhile (each on a new connection), and errors.
//
// Lean on purpose: one goroutine, one TCP connection and one 4 KiB read
// buffer per agent, requests pre-built. Levels are cumulative (10000, then
// 20000 more to reach 30000, ...). Connections come from several loopback
// source addresses (127.0.0.1, 127.0.0.2, ...) when one address's
// ephemeral ports would run out. Bounded by --levels and --duration.
//
//	fleetsim --server http://127.0.0.1:PORT --creds creds.txt --levels 10000,30000 --server-pid PID
//
// Output: one "FLEET level=..." line per level on stdout, progress on stderr.
package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dropless/dropless/testenv/perf/tools/internal/loopback"
)

// ipBindAddressNoPort (IP_BIND_ADDRESS_NO_PORT, Linux 4.2+) lets bind()
// choose the source address only: the port is picked at connect() time,
// per destination, so each source address offers the whole ephemeral range.
const ipBindAddressNoPort = 24

type stats struct {
	written  atomic.Int64 // agents whose first long-poll was sent
	held     atomic.Int64 // long-polls sent and not answered
	answered atomic.Int64 // long-polls answered (timeouts, assignments)
	early    atomic.Int64 // answered well before --wait without being asked to
	dialErr  atomic.Int64
	writeErr atomic.Int64
	readErr  atomic.Int64 // reset, EOF, read deadline while held
	status   atomic.Int64 // non-200 answers
}

func (s *stats) errors() int64 {
	return s.dialErr.Load() + s.writeErr.Load() + s.readErr.Load() + s.status.Load()
}

type sim struct {
	addr     string // host:port of the server
	host     string // Host header
	wait     int
	sources  []*net.TCPAddr // for held agents
	probeSrc *net.TCPAddr
	st       stats
	ramp     chan struct{}
}

func main() {
	server := flag.String("server", "", "update server URL (loopback only)")
	credsFile := flag.String("creds", "", "file of agent credentials, one a line")
	levelsFlag := flag.String("levels", "10000,30000,60000", "cumulative numbers of held agents")
	probes := flag.Int("probes", 300, "fresh non-waiting check-ins per level")
	probeAgents := flag.Int("probe-agents", 50, "credentials, from the end of --creds, kept for the probes")
	probePar := flag.Int("probe-parallel", 4, "probes in flight")
	wait := flag.Int("wait", 300, "long-poll seconds (?wait=)")
	rampPar := flag.Int("ramp-parallel", 200, "connections being opened at once")
	rampTimeout := flag.Duration("ramp-timeout", 3*time.Minute, "give a level this long to be sent")
	settle := flag.Duration("settle", 5*time.Second, "wait this long after a level is sent before measuring")
	duration := flag.Duration("duration", 15*time.Minute, "hard bound on the whole run")
	sourcesFlag := flag.String("sources", "auto", "comma-separated 127.x source addresses for held agents, or auto")
	serverPID := flag.Int("server-pid", 0, "read the server's memory and fds from /proc/PID (0: skip)")
	perSource := flag.Int("ports-per-source", 0, "connections per source address with --sources auto (0: 85% of ip_local_port_range)")
	flag.Parse()

	u, err := loopback.CheckURL(*server)
	if err != nil || *credsFile == "" {
		die(2, "need --server (loopback http URL) and --creds: %v", err)
	}
	var levels []int
	for _, f := range strings.Split(*levelsFlag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || (len(levels) > 0 && n <= levels[len(levels)-1]) {
			die(2, "--levels %q: give increasing positive numbers", *levelsFlag)
		}
		levels = append(levels, n)
	}
	maxLevel := levels[len(levels)-1]
	creds, err := readLines(*credsFile)
	if err != nil {
		die(1, "%v", err)
	}
	if len(creds) < maxLevel+*probeAgents {
		die(2, "%s has %d credentials; levels up to %d and %d probe agents need %d", *credsFile, len(creds), maxLevel, *probeAgents, maxLevel+*probeAgents)
	}
	probeCreds := creds[len(creds)-*probeAgents:]

	port := u.Port()
	if port == "" {
		port = "80"
	}
	s := &sim{addr: net.JoinHostPort(u.Hostname(), port), host: u.Host, wait: *wait, ramp: make(chan struct{}, *rampPar)}
	var srcs []string
	if *sourcesFlag == "auto" {
		per := *perSource
		if per <= 0 {
			per = portsPerSource()
		}
		k := (maxLevel + per - 1) / per
		for i := 1; i <= k+1; i++ { // one more for the probes
			srcs = append(srcs, fmt.Sprintf("127.0.0.%d", i))
		}
		fmt.Fprintf(os.Stderr, "fleetsim: %d connections per source address: %d source addresses for %d held agents, %s for probes\n", per, k, maxLevel, srcs[k])
	} else {
		srcs = strings.Split(*sourcesFlag, ",")
		if len(srcs) < 2 {
			srcs = append(srcs, srcs[0])
		}
	}
	for i, a := range srcs {
		if err := loopback.CheckHost(a); err != nil {
			die(2, "--sources: %v", err)
		}
		ta := &net.TCPAddr{IP: net.ParseIP(a)}
		if i == len(srcs)-1 {
			s.probeSrc = ta
		} else {
			s.sources = append(s.sources, ta)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), *duration)
	defer cancel()

	// Level 0: fresh check-ins against an idle server.
	all := append([]int{0}, levels...)
	started := 0
	for _, level := range all {
		t0 := time.Now()
		for ; started < level; started++ {
			go s.agent(ctx, started, creds[started])
		}
		sent := s.waitSent(ctx, level, *rampTimeout)
		rampS := time.Since(t0).Seconds()
		if level > 0 {
			sleepCtx(ctx, *settle)
		}
		srv := procStats(*serverPID)
		lat, perr := s.probe(ctx, probeCreds, *probes, *probePar)
		self := procStats(os.Getpid())
		p := pct(lat)
		fmt.Printf("FLEET level=%d sent=%d held=%d ramp_s=%.1f server_fds=%d server_rss_kb=%d server_hwm_kb=%d server_threads=%d "+
			"probe_n=%d probe_p50_us=%d probe_p99_us=%d probe_max_us=%d probe_err=%d "+
			"hold_dial_err=%d hold_write_err=%d hold_read_err=%d hold_status_err=%d early=%d answered=%d sim_rss_kb=%d complete=%t\n",
			level, s.st.written.Load(), s.st.held.Load(), rampS, srv.fds, srv.rss, srv.hwm, srv.threads,
			len(lat), p(0.50), p(0.99), p(1), perr,
			s.st.dialErr.Load(), s.st.writeErr.Load(), s.st.readErr.Load(), s.st.status.Load(), s.st.early.Load(), s.st.answered.Load(), self.rss,
			sent && ctx.Err() == nil)
		if !sent || ctx.Err() != nil {
			fmt.Fprintf(os.Stderr, "fleetsim: stopping at level %d: %s\n", level, map[bool]string{true: "--duration ran out", false: "not all long-polls were sent within --ramp-timeout"}[ctx.Err() != nil])
			break
		}
	}
	// Exiting closes every held connection at once.
	os.Exit(0)
}

func die(code int, format string, a ...any) {
	fmt.Fprintf(os.Stderr, "fleetsim: "+format+"\n", a...)
	os.Exit(code)
}

func readLines(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out, nil
}

// portsPerSource is how many connections one source address can hold to
// one destination: the ephemeral range, less a margin.
func portsPerSource() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	lo, hi := 32768, 60999
	if err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			lo, _ = strconv.Atoi(f[0])
			hi, _ = strconv.Atoi(f[1])
		}
	}
	return max(1000, (hi-lo+1)*85/100)
}

func (s *sim) dial(ctx context.Context, src *net.TCPAddr) (net.Conn, error) {
	d := net.Dialer{Timeout: 30 * time.Second, LocalAddr: src, Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		c.Control(func(fd uintptr) { serr = setNoPort(fd) })
		return serr
	}}
	return d.DialContext(ctx, "tcp", s.addr)
}

func (s *sim) request(cred, site string, wait int) []byte {
	body := fmt.Sprintf(`{"installed_version":"1.0.0","agent_version":"fleetsim","os":"linux","arch":"amd64","hostname":%q,"state":"idle"}`, site)
	path := "/api/v1/agent/checkin"
	if wait > 0 {
		path += "?wait=" + strconv.Itoa(wait)
	}
	return []byte(fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		path, s.host, cred, len(body), body))
}

// agent is one simulated agent: long-poll, re-poll when answered, reconnect
// after an error (1 s later), until ctx ends.
func (s *sim) agent(ctx context.Context, i int, cred string) {
	req := s.request(cred, fmt.Sprintf("fleetsim-%d", i), s.wait)
	src := s.sources[i%len(s.sources)]
	var conn net.Conn
	var br *bufio.Reader
	first := true
	s.ramp <- struct{}{}
	release := func() {
		if first {
			first = false
			<-s.ramp
			s.st.written.Add(1)
		}
	}
	defer func() {
		if first {
			<-s.ramp
		}
	}()
	for ctx.Err() == nil {
		if conn == nil {
			c, err := s.dial(ctx, src)
			if err != nil {
				if ctx.Err() == nil {
					s.st.dialErr.Add(1)
					sleepCtx(ctx, time.Second)
				}
				continue
			}
			conn, br = c, bufio.NewReaderSize(c, 4096)
		}
		if _, err := conn.Write(req); err != nil {
			s.st.writeErr.Add(1)
			conn.Close()
			conn = nil
			sleepCtx(ctx, time.Second)
			continue
		}
		release()
		s.st.held.Add(1)
		t0 := time.Now()
		conn.SetReadDeadline(t0.Add(time.Duration(s.wait)*time.Second + 30*time.Second))
		resp, err := http.ReadResponse(br, nil)
		s.st.held.Add(-1)
		if err != nil {
			if ctx.Err() == nil {
				s.st.readErr.Add(1)
			}
			conn.Close()
			conn = nil
			sleepCtx(ctx, time.Second)
			continue
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		s.st.answered.Add(1)
		if resp.StatusCode != http.StatusOK {
			s.st.status.Add(1)
			sleepCtx(ctx, time.Second)
		} else if time.Since(t0) < time.Duration(s.wait)*time.Second-2*time.Second {
			s.st.early.Add(1)
		}
		if resp.Close {
			conn.Close()
			conn = nil
		}
	}
}

// waitSent waits until level agents have sent their first long-poll.
func (s *sim) waitSent(ctx context.Context, level int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	last := time.Now()
	for s.st.written.Load() < int64(level) {
		if ctx.Err() != nil || time.Now().After(deadline) {
			return false
		}
		if time.Since(last) > 5*time.Second {
			last = time.Now()
			fmt.Fprintf(os.Stderr, "fleetsim: level %d: %d sent, %d held, %d errors\n", level, s.st.written.Load(), s.st.held.Load(), s.st.errors())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

// probe makes n fresh check-ins without wait, each on a new connection,
// par at a time, and returns their latencies (connect to last byte).
func (s *sim) probe(ctx context.Context, creds []string, n, par int) ([]time.Duration, int) {
	var mu sync.Mutex
	var lat []time.Duration
	errs := 0
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < par; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				req := s.request(creds[i%len(creds)], fmt.Sprintf("probe-%d", i), 0)
				d, err := s.once(ctx, req)
				mu.Lock()
				if err != nil {
					errs++
					if errs <= 3 {
						fmt.Fprintln(os.Stderr, "fleetsim: probe:", err)
					}
				} else {
					lat = append(lat, d)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return lat, errs
}

func (s *sim) once(ctx context.Context, req []byte) (time.Duration, error) {
	t0 := time.Now()
	c, err := s.dial(ctx, s.probeSrc)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(t0.Add(30 * time.Second))
	if _, err := c.Write(req); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(b))
	}
	return time.Since(t0), nil
}

func pct(lat []time.Duration) func(float64) int64 {
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return func(q float64) int64 {
		if len(lat) == 0 {
			return -1
		}
		return lat[min(len(lat)-1, int(q*float64(len(lat))))].Microseconds()
	}
}

type proc struct{ rss, hwm, threads, fds int64 }

// procStats reads a process's VmRSS, VmHWM (kB), threads and open fds.
func procStats(pid int) proc {
	var p proc
	if pid <= 0 || runtime.GOOS != "linux" {
		return proc{-1, -1, -1, -1}
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return proc{-1, -1, -1, -1}
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			p.rss = v
		case "VmHWM:":
			p.hwm = v
		case "Threads:":
			p.threads = v
		}
	}
	if ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err == nil {
		p.fds = int64(len(ents))
	} else {
		p.fds = -1
	}
	return p
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
