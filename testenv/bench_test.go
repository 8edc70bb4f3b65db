//go:build e2e && linux

package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
)

// BenchmarkIdleAgent measures a real idle agent over a minute (set
// IDLE_SECONDS to change): resident memory and CPU. Goal: RSS <= 25 MB.
//
//	go test -tags e2e -run '^$' -bench IdleAgent -benchtime 1x ./testenv/
func BenchmarkIdleAgent(b *testing.B) {
	secs := 60
	if v, err := strconv.Atoi(os.Getenv("IDLE_SECONDS")); err == nil {
		secs = v
	}
	for range b.N {
		env := newBenchEnv(b)
		site := env.site
		pid := site.Agent().Pid()
		time.Sleep(3 * time.Second) // past start-up
		cpu0 := cpuTicks(b, pid)
		start := time.Now()
		time.Sleep(time.Duration(secs) * time.Second)
		cpu := float64(cpuTicks(b, pid)-cpu0) / 100 // USER_HZ
		elapsed := time.Since(start).Seconds()
		rss, hwm := procMem(b, pid)
		b.ReportMetric(rss, "MB-rss")
		b.ReportMetric(hwm, "MB-peak-rss")
		b.ReportMetric(100*cpu/elapsed, "%cpu")
		b.ReportMetric(cpu, "cpu-s")
	}
}

// BenchmarkUpgradeDowntime measures the sample app's downtime during an
// upgrade (from the agent's "stopping" event to its "committed" event,
// which follows the passed health check) against the app's own restart
// (stop, start, first healthy answer) on the same machine.
func BenchmarkUpgradeDowntime(b *testing.B) {
	env := newBenchEnv(b)
	site := env.site
	var down, restart time.Duration
	for i := range b.N {
		v := fmt.Sprintf("1.%d.0", i+1)
		env.Publish(b, v, Healthy)
		env.MustCLI(b, "upgrade", "--site", site.Name, "--to", v, "--now")
		var j protocol.Job
		Await(b, "upgrade to "+v, func() bool {
			h := site.History(b)
			j = h[0]
			return j.To == v && j.Result != protocol.ResultPending && j.Result != protocol.ResultRunning && len(j.Events) > 0 && j.Events[len(j.Events)-1].State == protocol.StateCommitted
		})
		var stopAt, doneAt time.Time
		for _, e := range j.Events {
			switch e.State {
			case protocol.StateStopping:
				stopAt = e.At
			case protocol.StateCommitted:
				doneAt = e.At
			}
		}
		down += doneAt.Sub(stopAt)

		// The app's own restart, by hand, with the same commands.
		pid := filepath.Join(site.Dir, "app.pid")
		cur := filepath.Join(site.Install, "current")
		t0 := time.Now()
		run(b, "", env.Bin.SampleApp, "stop", "--pidfile", pid)
		run(b, cur, "./sampleapp", "start", "--listen", site.AppAddr, "--pidfile", pid)
		Await(b, "app healthy", func() bool { _, err := site.AppVersion(); return err == nil })
		restart += time.Since(t0)
	}
	b.ReportMetric(float64(down.Milliseconds())/float64(b.N), "ms-downtime")
	b.ReportMetric(float64(restart.Milliseconds())/float64(b.N), "ms-app-restart")
}

type benchEnv struct {
	*Env
	site *Site
}

func newBenchEnv(b *testing.B) *benchEnv {
	b.Helper()
	env := New(b)
	env.Publish(b, "1.0.0", Healthy)
	site := env.NewSite(b, "bench-site", "bench")
	env.MustCLI(b, "upgrade", "--site", site.Name, "--to", "1.0.0", "--now")
	Await(b, "installed", func() bool { return site.Info(b).InstalledVersion == "1.0.0" })
	return &benchEnv{Env: env, site: site}
}

func run(b *testing.B, dir, bin string, args ...string) {
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("%s %v: %v\n%s", bin, args, err, out)
	}
}

func cpuTicks(b *testing.B, pid int) int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name in parentheses; utime and stime are
	// fields 14 and 15.
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return ut + st
}

func procMem(b *testing.B, pid int) (rssMB, peakMB float64) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "VmRSS:":
			rssMB = kb / 1024
		case "VmHWM:":
			peakMB = kb / 1024
		}
	}
	return
}
