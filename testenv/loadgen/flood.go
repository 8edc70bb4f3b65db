package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dropless/dropless/pkg/agentapi"
	"github.com/dropless/dropless/pkg/protocol"
)

// flood is one flood scenario: a hostile (or broken) agent beside normal
// ones, measured from outside the server.
type flood struct {
	scenario string
	pid      int
	db       string
	duration time.Duration
	workers  int
	requests int
	events   int
	message  int
	normal   int
}

// tally counts answers by HTTP status ("error" for no answer).
type tally struct {
	mu sync.Mutex
	m  map[string]int
}

func (t *tally) add(err error) {
	k := "200"
	var ae *agentapi.Error
	switch {
	case errors.As(err, &ae):
		k = strconv.Itoa(ae.Status)
	case err != nil:
		k = "error"
	}
	t.addKey(k)
}

func (t *tally) addKey(k string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[string]int{}
	}
	t.m[k]++
}

func (t *tally) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	keys := make([]string, 0, len(t.m))
	for k := range t.m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%s=%d", k, t.m[k])
	}
	return b.String()
}

func (fl *flood) run(ctx context.Context, server, token, client string) error {
	o := op{base: server, token: token, hc: &http.Client{Timeout: 5 * time.Minute}}
	product := client + "-app"
	if err := o.publish(ctx, product, "1.1.0"); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	n := fl.normal + 1 // the last agent floods
	var et protocol.CreateEnrollTokenResponse
	body, _ := json.Marshal(protocol.CreateEnrollTokenRequest{Client: client, Uses: n, ExpiresIn: "1h"})
	if err := o.call(ctx, "POST", "/api/v1/enroll-tokens", "application/json", bytes.NewReader(body), &et); err != nil {
		return err
	}
	tr := &http.Transport{MaxIdleConnsPerHost: n + fl.workers + 10, IdleConnTimeout: time.Minute}
	hc := &http.Client{Transport: tr, Timeout: 5 * time.Minute}
	agents := make([]*agentapi.Client, n)
	for i := range agents {
		c := agentapi.New(server)
		c.HTTP = hc
		site := fmt.Sprintf("%s-site-%04d", client, i)
		if _, err := c.Enroll(ctx, protocol.EnrollRequest{Token: et.Token, Site: site, Client: client, Product: product}); err != nil {
			return err
		}
		if _, err := c.Checkin(ctx, checkinReport(site, nil), 0); err != nil {
			return err
		}
		agents[i] = c
	}
	flooder, floodSite := agents[n-1], fmt.Sprintf("%s-site-%04d", client, n-1)
	fmt.Printf("enrolled %d normal agents and one flooding agent\n", fl.normal)

	dbBefore := fileSize(fl.db) + fileSize(fl.db+"-wal")
	rssBefore := rssMB(fl.pid)
	rss := sampleRSS(ctx, fl.pid)
	probeCtx, stopProbe := context.WithCancel(ctx)
	probe := probeCheckins(probeCtx, agents[:n-1], client)
	// Let every normal agent check in once before the flood starts.
	time.Sleep(1500 * time.Millisecond)

	t0 := time.Now()
	var answers tally
	var extra string
	var err error
	switch fl.scenario {
	case "event-flood":
		extra, err = fl.eventFlood(ctx, o, flooder, floodSite, &answers)
	case "checkin-flood":
		fl.loop(ctx, func() error {
			_, err := flooder.Checkin(ctx, checkinReport(floodSite, nil), 0)
			return err
		}, &answers)
	case "auth-flood":
		fl.loop(ctx, func() error {
			c := &agentapi.Client{BaseURL: flooder.BaseURL, HTTP: flooder.HTTP}
			c.SetCredential(protocol.AgentCredentialPrefix + randHex(32))
			_, err := c.Checkin(ctx, checkinReport(floodSite, nil), 0)
			return err
		}, &answers)
	}
	took := time.Since(t0)
	stopProbe()
	lat, failed := probe()
	peak := rss()
	if err != nil {
		return err
	}
	dbAfter := fileSize(fl.db) + fileSize(fl.db+"-wal")

	name := map[string]string{"event-flood": "BenchmarkEventFlood", "checkin-flood": "BenchmarkCheckinFlood", "auth-flood": "BenchmarkAuthFlood"}[fl.scenario]
	p99 := percentile(lat, 0.99)
	fmt.Printf("%s\t1\t%.1f MB-peak-rss\t%.3f ms-p99-checkin\t%.1f MB-db-growth\n", name, peak, ms(p99), float64(dbAfter-dbBefore)/1e6)
	fmt.Printf("  flood: %s in %v, answered %s%s\n", fl.scenario, took.Round(time.Millisecond), answers.String(), extra)
	fmt.Printf("  server RSS: %.1f MB before, %.1f MB peak during the flood\n", rssBefore, peak)
	if fl.db != "" {
		fmt.Printf("  database: %.1f MB before, %.1f MB after\n", float64(dbBefore)/1e6, float64(dbAfter)/1e6)
	}
	fmt.Printf("  normal agents' check-ins during the flood: n=%d p50=%v p99=%v max=%v refused=%s\n", len(lat),
		percentile(lat, 0.5).Round(time.Microsecond), p99.Round(time.Microsecond), percentile(lat, 1).Round(time.Microsecond), failed.String())
	return nil
}

// eventFlood makes a job for the flooding agent's site, picks it up, and
// posts fl.requests batches of events for it; then reads the site's
// history as support would.
func (fl *flood) eventFlood(ctx context.Context, o op, a *agentapi.Client, site string, answers *tally) (string, error) {
	body, _ := json.Marshal(protocol.UpgradeRequest{Site: site, To: "1.1.0", Now: true})
	if err := o.call(ctx, "POST", "/api/v1/upgrades", "application/json", bytes.NewReader(body), nil); err != nil {
		return "", err
	}
	resp, err := a.Checkin(ctx, checkinReport(site, nil), 0)
	if err != nil || resp.Assignment == nil {
		return "", fmt.Errorf("the flooding agent got no job: %v", err)
	}
	job := resp.Assignment.JobID
	msg := strings.Repeat("x", fl.message)
	var next atomic.Int64
	var accepted atomic.Int64
	var wg sync.WaitGroup
	for range min(fl.workers, fl.requests) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(fl.requests) || ctx.Err() != nil {
					return
				}
				evs := make([]protocol.Event, fl.events)
				for k := range evs {
					evs[k] = protocol.Event{JobID: job, Seq: i*int64(fl.events) + int64(k) + 1, State: protocol.StateDownloading, Message: msg, At: time.Now()}
				}
				r, err := a.SendEvents(ctx, evs)
				answers.add(err)
				accepted.Add(int64(r.Accepted))
			}
		}()
	}
	wg.Wait()
	// History, as `updateserver history --site S` asks for it.
	t0 := time.Now()
	req, _ := http.NewRequestWithContext(ctx, "GET", o.base+"/api/v1/sites/"+url.PathEscape(site)+"/history", nil)
	req.Header.Set("Authorization", "Bearer "+o.token)
	hr, err := o.hc.Do(req)
	if err != nil {
		return "", err
	}
	n, _ := io.Copy(io.Discard, hr.Body)
	hr.Body.Close()
	return fmt.Sprintf("; %d events accepted; history: %d %.1f MB in %v", accepted.Load(), hr.StatusCode, float64(n)/1e6, time.Since(t0).Round(time.Millisecond)), nil
}

// loop runs call on fl.workers goroutines for fl.duration.
func (fl *flood) loop(ctx context.Context, call func() error, answers *tally) {
	ctx, cancel := context.WithTimeout(ctx, fl.duration)
	defer cancel()
	var wg sync.WaitGroup
	for range fl.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				err := call()
				if ctx.Err() != nil {
					return
				}
				answers.add(err)
			}
		}()
	}
	wg.Wait()
}

func checkinReport(site string, job *protocol.JobStatus) protocol.CheckinRequest {
	return protocol.CheckinRequest{InstalledVersion: "1.0.0", AgentVersion: "loadgen", OS: "linux", Arch: "amd64", Hostname: site, State: protocol.StateIdle, Job: job}
}

// probeCheckins makes each agent check in (without waiting) once a
// second, as a normal agent's poll does, until ctx ends; the returned
// function waits for them and gives the latencies of the answered
// check-ins and a tally of the refused ones.
func probeCheckins(ctx context.Context, agents []*agentapi.Client, client string) func() ([]time.Duration, *tally) {
	var mu sync.Mutex
	var lat []time.Duration
	failed := &tally{m: map[string]int{}}
	var wg sync.WaitGroup
	for i, a := range agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			site := fmt.Sprintf("%s-site-%04d", client, i)
			t := time.NewTimer(time.Duration(mrand.Int64N(int64(time.Second))))
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				t0 := time.Now()
				_, err := a.Checkin(ctx, checkinReport(site, nil), 0)
				d := time.Since(t0)
				if ctx.Err() != nil {
					return
				}
				if err != nil {
					failed.add(err)
				} else {
					mu.Lock()
					lat = append(lat, d)
					mu.Unlock()
				}
				t.Reset(time.Second)
			}
		}()
	}
	return func() ([]time.Duration, *tally) {
		wg.Wait()
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		return lat, failed
	}
}

// sampleRSS samples pid's resident memory every 20ms until the returned
// function is called, which gives the peak in MB (0 without a pid).
func sampleRSS(ctx context.Context, pid int) func() float64 {
	if pid == 0 {
		return func() float64 { return 0 }
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan float64)
	go func() {
		peak := 0.0
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			peak = max(peak, rssMB(pid))
			select {
			case <-ctx.Done():
				done <- peak
				return
			case <-t.C:
			}
		}
	}()
	return func() float64 {
		cancel()
		return <-done
	}
}

// rssMB reads VmRSS of pid from /proc, in MB.
func rssMB(pid int) float64 {
	if pid == 0 {
		return 0
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 64)
			return kb / 1024
		}
	}
	return 0
}

func fileSize(path string) int64 {
	if path == "" {
		return 0
	}
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func randHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
