// Command loadgen simulates many agents against a running update server,
// speaking the real agent protocol (pkg/agentapi) over loopback. It runs
// one scenario:
//
//   - upgrade (default): how long an upgrade support triggers takes to
//     reach every agent: trigger -> assignment received (the job starts).
//     It enrolls the agents (one enroll token), publishes tiny releases of
//     a product of its own, lets every agent long-poll, then per round
//     triggers one client-wide upgrade and records, per agent, when the
//     assignment arrived; agents then report the job done as a real agent
//     would. It prints p50/p90/p99/max per round and overall. The
//     agents speak through the lean client (see fleet) unless
//     --agent-client agentapi.
//   - rollout: the same agents, but each round creates a rollout over the
//     client (--max-parallel sites at once; agents report their job done
//     at once, so the next sites start as they end) and records create ->
//     assignment received per agent: the last one is the rollout's whole
//     run. A last step creates one more rollout, pauses it once
//     --max-parallel sites have their job, and says how long the pause
//     took to answer and how many sites still started after it answered.
//     With --pid it prints the server's CPU time per round.
//   - event-flood: one agent credential posts --flood-requests batches of
//     --flood-events events with --flood-message bytes each for its job,
//     then asks for the site's history, while --agents normal agents check
//     in once a second each.
//   - checkin-flood: one agent credential checks in as fast as
//     --flood-workers connections allow, for --duration, while the normal
//     agents check in once a second each.
//   - auth-flood: check-ins with made-up agent credentials as fast as
//     --flood-workers connections allow, for --duration, beside the normal
//     agents.
//   - fleet: one shard (--shard i/n) of a large fleet enrolled beforehand
//     (--creds, a file of credentials), spread over several servers
//     (--servers, replicas) and source addresses (--source-ips): every
//     agent long-polls, "READY n" says they all do, then each records when
//     its assignment to --version arrived (unix nanoseconds into --out),
//     reports the job done and goes on polling. It ends when all have
//     reported (testenv/perf/fleet triggers the rollout and pools shards).
//     The agents speak the agent's protocol through a lean client of the
//     load generator's (one connection and one goroutine each), or with
//     --agent-client agentapi through the agent's own (pkg/agentapi).
//   - probe: a fresh agent's check-in (new connection, no wait) every
//     --interval over --servers until --duration or SIGTERM; prints
//     p50/p99/max and errors.
//
// The flood scenarios print, benchmark-style, the server's peak resident
// memory during the flood (with --pid, read from /proc), the growth of its
// database (with --db), how the flood was answered, and p50/p99/max of the
// normal agents' check-ins during it.
//
//	loadgen --server http://127.0.0.1:8080 --token "$(cat DATA/admin.token)" --agents 1000 --rounds 3
//	loadgen --token "$(cat DATA/admin.token)" --scenario event-flood --pid "$SERVER_PID" --db DATA/updateserver.db
//	loadgen --scenario fleet --creds creds.txt --shard 2/6 --servers http://127.0.0.1:8080,http://127.0.0.1:8081 \
//	        --source-ips 127.0.0.2-127.0.0.9 --version 1.1.0 --out arrivals-2.txt --timeout 20m
//
// Bounded: it stops after --rounds (or --duration) or --timeout.
package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dropless/dropless/pkg/agentapi"
	"github.com/dropless/dropless/pkg/bundle"
	"github.com/dropless/dropless/pkg/protocol"
)

func main() {
	server := flag.String("server", "http://127.0.0.1:8080", "update server URL (loopback only)")
	token := flag.String("token", os.Getenv("UPDATESERVER_TOKEN"), "admin token")
	scenario := flag.String("scenario", "upgrade", "upgrade, rollout, event-flood, checkin-flood, auth-flood, fleet or probe")
	maxParallel := flag.Int("max-parallel", 500, "the rollout's --max-parallel (rollout)")
	agents := flag.Int("agents", 0, "simulated agents (default 1000 for upgrade, 50 normal agents beside a flood)")
	rounds := flag.Int("rounds", 3, "upgrades to trigger (upgrade)")
	timeout := flag.Duration("timeout", 5*time.Minute, "give up after this long")
	client := flag.String("client", fmt.Sprintf("loadgen-%d", time.Now().Unix()), "client name for the simulated sites")
	var fl flood
	flag.IntVar(&fl.pid, "pid", 0, "the server's process ID, to sample its resident memory (Linux /proc)")
	flag.StringVar(&fl.db, "db", "", "the server's database file, to measure its growth")
	flag.DurationVar(&fl.duration, "duration", 10*time.Second, "how long a check-in or auth flood lasts")
	flag.IntVar(&fl.workers, "flood-workers", 32, "concurrent connections of the flood")
	flag.IntVar(&fl.requests, "flood-requests", 20, "event batches the event flood posts")
	flag.IntVar(&fl.events, "flood-events", 500, "events per batch (event-flood)")
	flag.IntVar(&fl.message, "flood-message", 12<<10, "bytes per event message (event-flood)")
	var fs fleet
	servers := flag.String("servers", "", "fleet, probe: comma-separated server URLs (replicas); agent k uses the (k mod n)th")
	sources := flag.String("source-ips", "", "fleet, probe: dial from these loopback addresses in turn (127.0.0.2-127.0.0.9 or a list)")
	shard := flag.String("shard", "1/1", "fleet, probe: this process's share of --creds, i/n (a contiguous block)")
	flag.StringVar(&fs.creds, "creds", "", "fleet, probe: file of agent credentials, one a line")
	flag.StringVar(&fs.version, "version", "", "fleet: the version the rollout assigns")
	flag.StringVar(&fs.out, "out", "", "fleet: file for the arrival times (unix nanoseconds, one a line)")
	flag.IntVar(&fs.ramp, "ramp", 2000, "fleet: agents that start long-polling per second (0: all at once)")
	flag.DurationVar(&fs.interval, "interval", 100*time.Millisecond, "probe: time between fresh check-ins")
	flag.StringVar(&fs.client, "agent-client", cmp.Or(os.Getenv("LOADGEN_AGENT_CLIENT"), "lean"), "upgrade, rollout, fleet: the agents' HTTP client: lean (one connection and goroutine an agent, the load generator's CPU and memory spared) or agentapi (the agent's own, pkg/agentapi); the default is $LOADGEN_AGENT_CLIENT or lean, so that scripts that run loadgen can pick it")
	flag.StringVar(&fs.cpuprofile, "cpuprofile", "", "fleet: write this shard's CPU profile (go tool pprof) while its agents come online, until READY")
	flag.Parse()
	switch fs.client {
	case "lean", "agentapi":
	default:
		fmt.Fprintf(os.Stderr, "loadgen: --agent-client %q: use lean or agentapi\n", fs.client)
		os.Exit(2)
	}
	if *scenario == "fleet" || *scenario == "probe" {
		if err := fs.setup(*servers, *sources, *shard); err != nil || (*scenario == "fleet" && fs.version == "") {
			fmt.Fprintln(os.Stderr, "loadgen:", cmp.Or(err, errors.New("--version is required")))
			os.Exit(2)
		}
		limit := *timeout
		if *scenario == "probe" {
			limit = fl.duration
		}
		ctx, cancel := context.WithTimeout(context.Background(), limit)
		ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, os.Interrupt)
		run := fs.hold
		if *scenario == "probe" {
			run = fs.probe
		}
		err := run(ctx)
		stop()
		cancel()
		if err != nil {
			fmt.Fprintln(os.Stderr, "loadgen:", err)
			os.Exit(1)
		}
		return
	}
	if *token == "" {
		fmt.Fprintln(os.Stderr, "loadgen: --token (admin) is required")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	var err error
	switch *scenario {
	case "upgrade":
		err = run(ctx, *server, *token, *client, fs.client, cmp.Or(*agents, 1000), *rounds, 0, fl.pid)
	case "rollout":
		err = run(ctx, *server, *token, *client, fs.client, cmp.Or(*agents, 1000), *rounds, *maxParallel, fl.pid)
	case "event-flood", "checkin-flood", "auth-flood":
		fl.scenario, fl.normal = *scenario, cmp.Or(*agents, 50)
		err = fl.run(ctx, *server, *token, *client)
	default:
		fmt.Fprintf(os.Stderr, "loadgen: --scenario %q: use upgrade, rollout, event-flood, checkin-flood or auth-flood\n", *scenario)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

type op struct {
	base, token string
	hc          *http.Client
}

func (o op) call(ctx context.Context, method, path, ctype string, body io.Reader, out any) error {
	req, _ := http.NewRequestWithContext(ctx, method, o.base+path, body)
	req.Header.Set("Authorization", "Bearer "+o.token)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := o.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

func (o op) publish(ctx context.Context, product, version string) error {
	dir, err := os.MkdirTemp("", "loadgen-bundle-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	os.MkdirAll(filepath.Join(dir, "files"), 0o755)
	os.WriteFile(filepath.Join(dir, "files", "VERSION"), []byte(version), 0o644)
	var buf bytes.Buffer
	if err := bundle.Pack(ctx, dir, &buf); err != nil {
		return err
	}
	var up protocol.Upload
	if err := o.call(ctx, "POST", "/api/v1/uploads", "application/gzip", &buf, &up); err != nil {
		return err
	}
	req, _ := json.Marshal(protocol.PublishRequest{UploadID: up.ID, Product: product, Version: version})
	return o.call(ctx, "POST", "/api/v1/releases", "application/json", bytes.NewReader(req), nil)
}

type agent struct {
	c         fleetAgent
	site      string
	installed string
	got       chan time.Time // assignment arrival, per round
	reported  chan struct{}  // the job's events answered, per round
}

// run runs the upgrade scenario, or with maxParallel > 0 the rollout
// scenario (pid: the server's, for its CPU time), its agents speaking
// through agentClient (lean or agentapi).
func run(ctx context.Context, server, token, client, agentClient string, n, rounds, maxParallel, pid int) error {
	o := op{base: server, token: token, hc: &http.Client{Timeout: time.Minute}}
	product := client + "-app"
	versions := []string{"1.0.0"}
	extra := 0
	if maxParallel > 0 {
		extra = 1 // the version the pause step's rollout assigns
	}
	for i := 1; i <= rounds+extra; i++ {
		versions = append(versions, fmt.Sprintf("1.%d.0", i))
	}
	for _, v := range versions[1:] {
		if err := o.publish(ctx, product, v); err != nil {
			return fmt.Errorf("publish: %w", err)
		}
	}
	var et protocol.CreateEnrollTokenResponse
	body, _ := json.Marshal(protocol.CreateEnrollTokenRequest{Client: client, Uses: n, ExpiresIn: "1h"})
	if err := o.call(ctx, "POST", "/api/v1/enroll-tokens", "application/json", bytes.NewReader(body), &et); err != nil {
		return err
	}

	// One shared transport, as many connections as agents: it enrolls
	// them, and the agentapi clients go on with it; lean ones share one
	// dialer.
	tr := &http.Transport{MaxIdleConnsPerHost: n + 10, MaxConnsPerHost: 0, IdleConnTimeout: time.Minute}
	hc := &http.Client{Transport: tr}
	dial := dialer(nil)
	as := make([]*agent, n)
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 64)
	for i := range as {
		a := &agent{site: fmt.Sprintf("%s-site-%04d", client, i), installed: versions[0], got: make(chan time.Time, rounds+1), reported: make(chan struct{}, rounds+1)}
		as[i] = a
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c := agentapi.New(server)
			c.HTTP = hc
			enrolled, err := c.Enroll(ctx, protocol.EnrollRequest{Token: et.Token, Site: a.site, Client: client, Product: product})
			if err != nil {
				errs <- err
				return
			}
			a.c = c
			if agentClient == "lean" {
				if a.c, err = newLeanAgent(ctx, server, enrolled.Credential, dial); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
	}
	fmt.Printf("enrolled %d agents in %v\n", n, time.Since(start).Round(time.Millisecond))

	var t agentTally
	for _, a := range as {
		go a.loop(ctx, &t)
	}
	for t.polling.Load() < int64(n) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // let every long-poll reach the server
	fmt.Printf("%d agents long-polling\n", n)

	var all []time.Duration
	for r := 1; r <= rounds; r++ {
		to := versions[r]
		cpu0, self0 := cpuTime(pid), cpuTime(os.Getpid())
		t0 := time.Now()
		if maxParallel > 0 {
			if _, err := o.rollout(ctx, product, to, client, maxParallel); err != nil {
				return err
			}
			fmt.Printf("round %d: rollout create for %d sites answered in %v\n", r, n, time.Since(t0).Round(time.Millisecond))
		} else {
			body, _ := json.Marshal(protocol.UpgradeRequest{Client: client, To: to, Now: true})
			if err := o.call(ctx, "POST", "/api/v1/upgrades", "application/json", bytes.NewReader(body), nil); err != nil {
				return err
			}
			fmt.Printf("round %d: upgrade call for %d sites answered in %v\n", r, n, time.Since(t0).Round(time.Millisecond))
		}
		lat := make([]time.Duration, 0, n)
		for _, a := range as {
			select {
			case t := <-a.got:
				lat = append(lat, t.Sub(t0))
			case <-ctx.Done():
				return fmt.Errorf("round %d: only %d of %d agents got the assignment: %w", r, len(lat), n, ctx.Err())
			}
		}
		report(fmt.Sprintf("round %d (-> %s)", r, to), lat)
		if pid > 0 {
			fmt.Printf("round %d: server CPU %v, loadgen CPU %v, over %v\n", r, (cpuTime(pid) - cpu0).Round(time.Millisecond),
				(cpuTime(os.Getpid()) - self0).Round(time.Millisecond), time.Since(t0).Round(time.Millisecond))
		}
		all = append(all, lat...)
		// Wait for every agent to finish its job before the next round:
		// its events answered (a job still open when the next upgrade
		// comes refuses it), then a second for the check-ins that report
		// the results to be back in their long-polls. Without the first
		// wait the next upgrade's time counted the reports queued ahead
		// of it, and could meet a job not yet ended.
		for _, a := range as {
			select {
			case <-a.reported:
			case <-ctx.Done():
				return fmt.Errorf("round %d: agents did not report their jobs: %w", r, ctx.Err())
			}
		}
		time.Sleep(time.Second)
	}
	report("all rounds", all)
	fmt.Println(t.String())
	if maxParallel > 0 {
		return pauseStep(ctx, o, as, product, versions[rounds+1], client, maxParallel)
	}
	return nil
}

func (o op) rollout(ctx context.Context, product, version, client string, maxParallel int) (protocol.Rollout, error) {
	body, _ := json.Marshal(protocol.RolloutRequest{Product: product, Version: version, Clients: []string{client}, MaxParallel: maxParallel})
	var ro protocol.Rollout
	err := o.call(ctx, "POST", "/api/v1/rollouts", "application/json", bytes.NewReader(body), &ro)
	return ro, err
}

// pauseStep creates a rollout, pauses it once maxParallel sites have
// their job, and counts the sites that started after the pause answered.
func pauseStep(ctx context.Context, o op, as []*agent, product, version, client string, maxParallel int) error {
	ro, err := o.rollout(ctx, product, version, client, maxParallel)
	if err != nil {
		return err
	}
	started := 0
	for _, a := range as {
		if started == maxParallel {
			break
		}
		select {
		case <-a.got:
			started++
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	t0 := time.Now()
	if err := o.call(ctx, "POST", fmt.Sprintf("/api/v1/rollouts/%d/pause", ro.ID), "", nil, nil); err != nil {
		return err
	}
	answered := time.Now()
	time.Sleep(2 * time.Second)
	var before, after int
	for _, a := range as {
		for drained := false; !drained; {
			select {
			case t := <-a.got:
				if t.Before(answered) {
					before++
				} else {
					after++
				}
			default:
				drained = true
			}
		}
	}
	// An assignment that arrives after the pause answered is of a job made
	// before the pause committed (the scheduler re-reads the rollout's
	// state in the transaction that makes jobs), still on its way.
	fmt.Printf("pause: answered in %v; assignments received while it was asked %d (beyond the first %d), after it answered %d (jobs made before it, in flight)\n",
		answered.Sub(t0).Round(time.Millisecond), before, maxParallel, after)
	return o.call(ctx, "POST", fmt.Sprintf("/api/v1/rollouts/%d/cancel", ro.ID), "", nil, nil)
}

// cpuTime is the user+system CPU time pid has used (Linux /proc; 0
// without a pid).
func cpuTime(pid int) time.Duration {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command (which may hold spaces) end with ")".
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * (time.Second / 100) // clock ticks of 1/100 s (USER_HZ)
}

// agentTally counts what the simulated agents of the upgrade and rollout
// scenarios met: how many long-poll, and the calls that failed (an agent
// checks in again a second after a failed check-in; its job's result
// goes with that check-in whether its events were answered or not).
type agentTally struct {
	polling                atomic.Int64
	checkinErrs, eventErrs atomic.Int64
	mu                     sync.Mutex
	first                  error
}

func (t *agentTally) failed(n *atomic.Int64, err error) {
	n.Add(1)
	t.mu.Lock()
	if t.first == nil {
		t.first = err
	}
	t.mu.Unlock()
}

func (t *agentTally) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := fmt.Sprintf("agent errors: check-ins %d, events %d", t.checkinErrs.Load(), t.eventErrs.Load())
	if t.first != nil {
		s += "; the first: " + t.first.Error()
	}
	return s
}

// loop is one simulated agent: long-poll, and on an assignment report the
// job (events + a check-in with the new version).
func (a *agent) loop(ctx context.Context, t *agentTally) {
	first := true
	var last *protocol.JobStatus
	for ctx.Err() == nil {
		req := protocol.CheckinRequest{InstalledVersion: a.installed, AgentVersion: "loadgen", OS: "linux", Arch: "amd64", Hostname: a.site, State: protocol.StateIdle, Job: last}
		// The first check-in reports the agent (a write on the server)
		// and does not wait; the agent counts as long-polling once it is
		// answered, so the first upgrade is not queued behind 10,000
		// first reports (the fleet scenario does the same).
		wait := 60 * time.Second
		if first {
			wait = 0
		}
		resp, err := a.c.Checkin(ctx, req, wait)
		if err == nil && first {
			t.polling.Add(1)
			first = false
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			t.failed(&t.checkinErrs, err)
			time.Sleep(time.Second)
			continue
		}
		asg := resp.Assignment
		if asg == nil || (last != nil && last.ID == asg.JobID) {
			continue
		}
		a.got <- time.Now()
		now := time.Now()
		if _, err := a.c.SendEvents(ctx, []protocol.Event{
			{JobID: asg.JobID, Seq: 1, State: protocol.StateDownloading, At: now},
			{JobID: asg.JobID, Seq: 2, State: protocol.StateCommitted, At: now},
		}); err != nil && ctx.Err() == nil {
			t.failed(&t.eventErrs, err)
		}
		select {
		case a.reported <- struct{}{}:
		default: // nobody counts (the rollout scenario's last step)
		}
		a.installed = asg.Version
		last = &protocol.JobStatus{ID: asg.JobID, From: asg.From, To: asg.Version, State: protocol.StateCommitted, Result: protocol.ResultSucceeded}
	}
}

func report(name string, lat []time.Duration) {
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	p := func(q float64) time.Duration { return lat[min(len(lat)-1, int(q*float64(len(lat))))] }
	fmt.Printf("%-22s n=%d  p50=%v  p90=%v  p99=%v  max=%v\n", name, len(lat),
		p(0.50).Round(time.Microsecond), p(0.90).Round(time.Microsecond), p(0.99).Round(time.Microsecond), lat[len(lat)-1].Round(time.Microsecond))
}
