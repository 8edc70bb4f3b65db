package main

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime/pprof"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dropless/dropless/pkg/agentapi"
	"github.com/dropless/dropless/pkg/protocol"
)

// fleet is the fleet and probe scenarios: agents enrolled beforehand (a
// credentials file, one a line, as testenv/perf/tools/enroll writes it),
// spread over several servers (replicas) and source addresses, and over
// several loadgen processes (--shard i/n) because one process may hold
// only as many connections as its open-file limit allows.
type fleet struct {
	servers  []string
	sources  []*net.TCPAddr
	creds    string
	shard    int // this process's shard, 0-based
	shards   int
	version  string        // fleet: the version the rollout assigns
	out      string        // fleet: arrival times, unix nanoseconds, one a line
	interval time.Duration // probe: time between fresh check-ins
	ramp     int           // fleet: agents that start polling per second
	// cpuprofile: fleet: the file for this process's CPU profile while
	// its agents come online (the ramp), until READY.
	cpuprofile string
	// client: fleet: the simulated agents' HTTP client, "lean" (leanAgent)
	// or "agentapi" (the agent's own, pkg/agentapi).
	client string
}

// setup reads the fleet and probe flags.
func (f *fleet) setup(servers, sources, shard string) error {
	var err error
	if f.creds == "" {
		return errors.New("--creds is required")
	}
	if f.servers, err = parseServers(servers); err != nil {
		return err
	}
	if f.sources, err = parseSources(sources); err != nil {
		return err
	}
	f.shard, f.shards, err = parseShard(shard)
	if err != nil {
		return err
	}
	return nil
}

// parseServers splits a comma-separated list of loopback server URLs.
func parseServers(s string) ([]string, error) {
	var out []string
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimRight(strings.TrimSpace(f), "/")
		if f == "" {
			continue
		}
		u, err := url.Parse(f)
		if err != nil || u.Scheme != "http" || !loopbackHost(u.Hostname()) {
			return nil, fmt.Errorf("--servers: %q is not an http URL on 127.0.0.0/8", f)
		}
		out = append(out, f)
	}
	if len(out) == 0 {
		return nil, errors.New("--servers: give at least one URL")
	}
	return out, nil
}

func loopbackHost(h string) bool {
	ip := net.ParseIP(h)
	return ip != nil && ip.To4() != nil && ip.To4()[0] == 127
}

// parseSources reads --source-ips: "" (the system picks), a range
// 127.0.0.2-127.0.0.9, or a comma-separated list; loopback only.
func parseSources(s string) ([]*net.TCPAddr, error) {
	if s == "" {
		return nil, nil
	}
	var out []*net.TCPAddr
	for _, f := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(f), "-")
		a, b := net.ParseIP(lo).To4(), net.ParseIP(hi).To4()
		if !isRange {
			b = a
		}
		if a == nil || b == nil || !loopbackHost(a.String()) || !loopbackHost(b.String()) || a[0] != b[0] || a[1] != b[1] || a[2] != b[2] || a[3] > b[3] {
			return nil, fmt.Errorf("--source-ips: %q: give 127.x.y.a-127.x.y.b or a comma-separated list of 127.0.0.0/8 addresses", f)
		}
		for i := int(a[3]); i <= int(b[3]); i++ {
			out = append(out, &net.TCPAddr{IP: net.IPv4(a[0], a[1], a[2], byte(i))})
		}
	}
	return out, nil
}

// parseShard reads --shard i/n (1-based i on the command line).
func parseShard(s string) (int, int, error) {
	a, b, ok := strings.Cut(s, "/")
	i, err1 := strconv.Atoi(a)
	n, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || n < 1 || i < 1 || i > n {
		return 0, 0, fmt.Errorf("--shard %q: give i/n with 1 <= i <= n, e.g. 2/6", s)
	}
	return i - 1, n, nil
}

// dialer dials from the source addresses in turn (the system's choice
// without any), with IP_BIND_ADDRESS_NO_PORT so that each source address
// offers its whole ephemeral port range to each server.
func dialer(sources []*net.TCPAddr) func(ctx context.Context, network, addr string) (net.Conn, error) {
	var next atomic.Uint64
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
		if len(sources) > 0 {
			d.LocalAddr = sources[next.Add(1)%uint64(len(sources))]
			d.Control = func(_, _ string, c syscall.RawConn) error {
				var serr error
				if err := c.Control(func(fd uintptr) { serr = setNoPort(fd) }); err != nil {
					return err
				}
				return serr
			}
		}
		return d.DialContext(ctx, network, addr)
	}
}

// transport is the agents' shared Transport, dialing with dialer(sources).
func transport(sources []*net.TCPAddr, maxIdle int, keepAlive bool) *http.Transport {
	// Idle connections are dropped after 90 s, as the agent's own client
	// does (pkg/agentapi), before the server's 2 minutes: the shard's
	// agents share one pool, and a connection idle in it longer, closed by
	// the server as it was reused, failed a check-in ("server closed idle
	// connection": a POST is not retried).
	return &http.Transport{DialContext: dialer(sources), MaxIdleConnsPerHost: maxIdle, IdleConnTimeout: 90 * time.Second, DisableKeepAlives: !keepAlive}
}

// mine returns this shard's slice of the credentials file: a contiguous
// block, so shards never share an agent.
func (f *fleet) mine() (creds []string, first int, err error) {
	fh, err := os.Open(f.creds)
	if err != nil {
		return nil, 0, err
	}
	defer fh.Close()
	var all []string
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			all = append(all, l)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, 0, err
	}
	if len(all) < f.shards {
		return nil, 0, fmt.Errorf("%s has %d credentials for %d shards", f.creds, len(all), f.shards)
	}
	lo, hi := f.shard*len(all)/f.shards, (f.shard+1)*len(all)/f.shards
	return all[lo:hi], lo, nil
}

// hold runs the fleet scenario for this shard: every agent long-polls its
// server (agent k uses servers[k % len(servers)]); "READY n" is printed
// once each has had its first check-in (not waiting: it reports the
// agent) answered and has sent its first long-poll. Each agent waits for
// an assignment to f.version, records when it arrived, reports the job
// done (events, then a check-in with the job's result) and goes on
// long-polling, the job's result in every check-in as the agent sends it
// (so a report that timed out still arrives). When every agent has reported, the arrival times go to
// f.out and the shard prints its summary and returns; errors (failed
// check-ins or reports) make it fail.
func (f *fleet) hold(ctx context.Context) error {
	creds, first, err := f.mine()
	if err != nil {
		return err
	}
	n := len(creds)
	stopProfile, err := startProfile(f.cpuprofile)
	if err != nil {
		return err
	}
	defer stopProfile()
	newAgent := f.agentMaker(ctx, n)
	var polling, reported, errCount atomic.Int64
	var ready atomic.Bool // READY was printed
	arrivals := make([]int64, n)
	// How long each agent's answered first check-in took (the ramp's
	// measure: one near the client's 30 s timeout is an error next run).
	firsts := make([]time.Duration, n)
	done := make(chan struct{})
	var firstErr atomic.Value
	var kinds tally
	// Errors are counted by what failed (first: an agent's first
	// check-in; poll: a long-poll) and, before READY, marked "ramp:".
	fail := func(what string, err error) {
		if errCount.Add(1) == 1 {
			firstErr.Store(err.Error())
		}
		if !ready.Load() {
			what = "ramp:" + what
		}
		kinds.addKey(errKind(what, err))
	}
	pace := newRamp(time.Now(), f.ramp)
	for i, cred := range creds {
		// A connection storm is not what this measures.
		if d := pace.wait(i, time.Now()); d > 0 {
			time.Sleep(d)
		}
		k := first + i
		c, err := newAgent(f.servers[k%len(f.servers)], cred)
		if err != nil {
			return err
		}
		go func() {
			installed, sentFirst := "1.0.0", false
			var last *protocol.JobStatus // sent with every check-in, as the agent does
			// The job's result is reported once a check-in carrying it
			// is answered: the shard ends only when every agent's is
			// (a shard that ended on a report that timed out left its
			// job open, and the rollout waiting for it).
			unreported := false
			acked := func() {
				if unreported {
					unreported = false
					if reported.Add(1) == int64(n) {
						close(done)
					}
				}
			}
			for ctx.Err() == nil {
				req := protocol.CheckinRequest{InstalledVersion: installed, AgentVersion: "loadgen", OS: "linux", Arch: "amd64", State: protocol.StateIdle, Job: last}
				// The first check-in reports the agent (a write) and
				// does not wait: the agent counts as polling once it
				// is answered, so that READY (and the idle probe after
				// it) does not come while first reports still queue.
				wait := 60 * time.Second
				if !sentFirst {
					wait = 0
				}
				t0 := time.Now()
				resp, err := c.Checkin(ctx, req, wait)
				if err != nil {
					if what := "poll"; ctx.Err() == nil {
						if !sentFirst {
							what = "first"
						}
						fail(what, err)
						time.Sleep(time.Second)
					}
					continue
				}
				acked()
				if !sentFirst {
					firsts[i] = time.Since(t0)
					sentFirst = true
					polling.Add(1)
				}
				asg := resp.Assignment
				if asg == nil || asg.Version != f.version || atomic.LoadInt64(&arrivals[i]) != 0 {
					continue
				}
				atomic.StoreInt64(&arrivals[i], time.Now().UnixNano())
				now := time.Now()
				if _, err := c.SendEvents(ctx, []protocol.Event{
					{JobID: asg.JobID, Seq: 1, State: protocol.StateDownloading, At: now},
					{JobID: asg.JobID, Seq: 2, State: protocol.StateCommitted, At: now},
				}); err != nil && ctx.Err() == nil {
					fail("events", err)
				}
				installed = asg.Version
				last = &protocol.JobStatus{ID: asg.JobID, From: asg.From, To: asg.Version, State: protocol.StateCommitted, Result: protocol.ResultSucceeded}
				req = protocol.CheckinRequest{InstalledVersion: installed, AgentVersion: "loadgen", OS: "linux", Arch: "amd64", State: protocol.StateIdle, Job: last}
				unreported = true
				if _, err := c.Checkin(ctx, req, 0); err != nil {
					if ctx.Err() == nil {
						fail("report", err) // the next check-in carries it again
					}
					continue
				}
				acked()
			}
		}()
	}
	for polling.Load() < int64(n) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second) // let every long-poll reach its server
	ready.Store(true)
	stopProfile()
	rampCPU := cpuTime(os.Getpid())
	slices.Sort(firsts) // each written before its polling.Add
	fmt.Printf("READY %d agents long-polling (shard %d/%d, %d servers, %d source addresses)\n", n, f.shard+1, f.shards, len(f.servers), max(1, len(f.sources)))
	select {
	case <-done:
	case <-ctx.Done():
	}
	var got []int64
	for i := range arrivals {
		if t := atomic.LoadInt64(&arrivals[i]); t != 0 {
			got = append(got, t)
		}
	}
	if f.out != "" {
		var b strings.Builder
		for _, t := range got {
			b.WriteString(strconv.FormatInt(t, 10) + "\n")
		}
		if err := os.WriteFile(f.out, []byte(b.String()), 0o644); err != nil {
			return err
		}
	}
	// The shard's own cost: CPU until READY (the ramp), CPU in all and
	// resident memory at the end.
	self := os.Getpid()
	fmt.Printf("SHARD %d/%d agents=%d assigned=%d reported=%d first_p50_ms=%.0f first_p99_ms=%.0f first_max_ms=%.0f client=%s ramp_cpu_s=%.1f cpu_s=%.1f rss_mib=%.0f errors=%d %s\n", f.shard+1, f.shards, n, len(got), reported.Load(),
		ms(percentile(firsts, 0.5)), ms(percentile(firsts, 0.99)), ms(percentile(firsts, 1)), cmp.Or(f.client, "lean"),
		rampCPU.Seconds(), cpuTime(self).Seconds(), rssMB(self), errCount.Load(), kinds.String())
	if e := errCount.Load(); e > 0 {
		return fmt.Errorf("%d errors, the first: %v", e, firstErr.Load())
	}
	if len(got) < n {
		return fmt.Errorf("only %d of %d agents got %s: %w", len(got), n, f.version, ctx.Err())
	}
	return nil
}

// agentMaker returns what makes the shard's n agents' clients (f.client),
// all dialing from f.sources in turn: one dialer, or one Transport, for
// the shard, so that its connections spread over the source addresses
// and their ports. ctx ends the lean agents.
func (f *fleet) agentMaker(ctx context.Context, n int) func(server, cred string) (fleetAgent, error) {
	if f.client == "agentapi" {
		hc := &http.Client{Transport: transport(f.sources, n+10, true)}
		return func(server, cred string) (fleetAgent, error) {
			return &agentapi.Client{BaseURL: server, Credential: cred, HTTP: hc}, nil
		}
	}
	dial := dialer(f.sources)
	return func(server, cred string) (fleetAgent, error) {
		return newLeanAgent(ctx, server, cred, dial)
	}
}

// ramp paces agents starting at perSecond (0: all at once) by when each
// is due, not by a sleep between two: on a loaded machine a 500 µs sleep
// lasts tens of milliseconds, and 14,000 agents of a shard at 2,000/s
// took 12 minutes to start instead of 7 s.
type ramp struct {
	start time.Time
	step  time.Duration
}

func newRamp(start time.Time, perSecond int) ramp {
	if perSecond <= 0 {
		return ramp{start: start}
	}
	return ramp{start: start, step: time.Second / time.Duration(perSecond)}
}

// wait is how long agent i waits at now before it starts: none when it
// is due (or late: the ones behind start back to back).
func (r ramp) wait(i int, now time.Time) time.Duration {
	return max(0, r.start.Add(time.Duration(i)*r.step).Sub(now))
}

// errKind names a failed call for the summary: what-STATUS for an error
// answer, what-timeout for none in time, what-eof, -reset or -refused
// for a connection closed, reset or refused, what-error otherwise.
func errKind(what string, err error) string {
	var ae *agentapi.Error
	switch {
	case errors.As(err, &ae):
		return what + "-" + strconv.Itoa(ae.Status)
	case errors.Is(err, agentapi.ErrTimeout):
		return what + "-timeout"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return what + "-eof" // closed by the server without an answer
	case errors.Is(err, syscall.ECONNRESET):
		return what + "-reset"
	case errors.Is(err, syscall.ECONNREFUSED):
		return what + "-refused"
	}
	return what + "-error"
}

// probe makes a fresh agent's check-in (a new connection each, no wait)
// every f.interval, over the servers in turn, until ctx ends (--duration,
// SIGTERM or SIGINT); it prints how long they took and how many failed.
func (f *fleet) probe(ctx context.Context) error {
	creds, _, err := f.mine()
	if err != nil {
		return err
	}
	hc := &http.Client{Transport: transport(f.sources, 0, false)}
	var mu sync.Mutex
	var lat []time.Duration
	var failed tally
	var wg sync.WaitGroup
	t := time.NewTicker(f.interval)
	defer t.Stop()
	for k := 0; ; k++ {
		select {
		case <-ctx.Done():
			wg.Wait()
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			if len(lat) == 0 {
				return fmt.Errorf("no probe answered (%s)", failed.String())
			}
			nerr := 0
			for _, v := range failed.m {
				nerr += v
			}
			fmt.Printf("PROBE n=%d p50_us=%d p99_us=%d max_us=%d errors=%d %s\n", len(lat), percentile(lat, 0.5).Microseconds(),
				percentile(lat, 0.99).Microseconds(), percentile(lat, 1).Microseconds(), nerr, failed.String())
			return nil
		case <-t.C:
		}
		c := &agentapi.Client{BaseURL: f.servers[k%len(f.servers)], Credential: creds[k%len(creds)], HTTP: hc}
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := time.Now()
			// Not cut by ctx: a probe started is measured to its end.
			_, err := c.Checkin(context.Background(), protocol.CheckinRequest{InstalledVersion: "1.0.0", AgentVersion: "loadgen", OS: "linux", Arch: "amd64", State: protocol.StateIdle}, 0)
			d := time.Since(t0)
			if err != nil {
				failed.add(err)
				return
			}
			mu.Lock()
			lat = append(lat, d)
			mu.Unlock()
		}()
	}
}

// startProfile starts a CPU profile into path (none when path is empty);
// stop, which may be called more than once, ends it and closes the file.
func startProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	out, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(out); err != nil {
		out.Close()
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			pprof.StopCPUProfile()
			if err := out.Close(); err != nil {
				fmt.Fprintln(os.Stderr, "loadgen: --cpuprofile:", err)
			}
		})
	}, nil
}
