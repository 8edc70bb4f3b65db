// Package support collects `updateagent support-bundle`: a .tar.gz for
// the vendor's support with the agent's config (secrets redacted), its
// status, its recent logs, the journal of its last jobs, the drift report
// and disk and OS facts. It only reads: it takes no lock the running
// agent holds (the journal is opened read-only), and it needs neither the
// server nor a valid config (a config that does not load is included,
// redacted, with the error).
package support

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/dropless/dropless/agent/internal/config"
	"github.com/dropless/dropless/agent/internal/engine"
	"github.com/dropless/dropless/agent/internal/runner"
	"github.com/dropless/dropless/pkg/buildinfo"
)

// Options says what to collect.
type Options struct {
	// ConfigPath is the agent's config file.
	ConfigPath string
	// Status returns what `updateagent status --json` prints for cfg.
	Status func(cfg *config.Config) ([]byte, error)
	// ServiceName is the agent's OS service (whose logs are collected).
	ServiceName string
	// LogFiles are more log files to include (their last LogBytes).
	LogFiles []string
	// Jobs is how many of the last jobs to include; 0 means 20.
	Jobs int
	// Now is the bundle's time; zero means time.Now.
	Now time.Time
}

// LogBytes is how much of the end of each log file the bundle keeps.
const LogBytes = 4 << 20

// Summary says what went into a bundle and what could not.
type Summary struct {
	Files   []string // paths in the archive
	Missing []string // what could not be collected, and why
}

// Write writes the bundle (a gzip'd tar) to w.
func Write(ctx context.Context, w io.Writer, o Options) (Summary, error) {
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if o.Jobs == 0 {
		o.Jobs = 20
	}
	if o.ServiceName == "" {
		o.ServiceName = "updateagent"
	}
	c := &collector{now: o.Now.UTC()}
	raw, rerr := os.ReadFile(o.ConfigPath)
	if rerr != nil {
		return Summary{}, fmt.Errorf("read config: %w", rerr)
	}
	cfg, cerr := config.Parse(raw)
	if cerr != nil {
		// A config that does not validate is what support most needs to
		// see: take what it says without the checks.
		c.missing("the config does not load (" + cerr.Error() + "): the rest is collected from what it says")
		cfg = &config.Config{}
		if _, err := toml.Decode(string(raw), cfg); err != nil {
			cfg = &config.Config{}
		}
	}
	c.collectSecrets(cfg)
	site := cfg.Site
	if site == "" {
		site = "site"
	}
	c.prefix = fmt.Sprintf("updateagent-support-%s-%s/", site, c.now.Format("20060102T150405Z"))

	c.addText("config.toml", c.red.config(string(raw)))
	if o.Status != nil && cfg.DataDir != "" {
		if b, err := o.Status(cfg); err != nil {
			c.missing("status: " + err.Error())
		} else {
			c.addText("status.json", string(b))
		}
	}
	c.history(cfg, o.Jobs)
	c.drift(cfg)
	c.facts(cfg)
	c.logs(ctx, o)
	c.addText("README.txt", c.readme(o.ConfigPath))

	gz := gzip.NewWriter(w)
	tw := tar.NewWriter(gz)
	for _, f := range c.files {
		hdr := &tar.Header{Name: c.prefix + f.name, Mode: 0o600, Size: int64(len(f.data)), ModTime: c.now, Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(hdr); err != nil {
			return Summary{}, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return Summary{}, err
		}
	}
	if err := tw.Close(); err != nil {
		return Summary{}, err
	}
	if err := gz.Close(); err != nil {
		return Summary{}, err
	}
	s := Summary{Missing: c.notes}
	for _, f := range c.files {
		s.Files = append(s.Files, c.prefix+f.name)
	}
	return s, nil
}

type file struct {
	name string
	data []byte
}

type collector struct {
	now    time.Time
	prefix string
	red    redactor
	files  []file
	notes  []string
}

func (c *collector) missing(s string) { c.notes = append(c.notes, s) }

// addText adds a file, scrubbed of secrets.
func (c *collector) addText(name, s string) {
	c.files = append(c.files, file{name, []byte(c.red.text(s))})
}

func (c *collector) addJSON(name string, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		c.missing(name + ": " + err.Error())
		return
	}
	c.addText(name, string(b)+"\n")
}

// collectSecrets learns the literal secrets to scrub everywhere: the
// enroll token, the DSN's password, the agent's credential.
func (c *collector) collectSecrets(cfg *config.Config) {
	c.red.add(cfg.EnrollToken)
	if cfg.Database != nil {
		c.red.addDSN(cfg.Database.DSN)
	}
	if cfg.DataDir != "" {
		if cred, err := runner.ReadCredential(cfg.DataDir); err == nil {
			c.red.add(cred)
		}
	}
}

// history writes the last jobs and their events: history.txt to read,
// history.json for tools.
func (c *collector) history(cfg *config.Config, n int) {
	if cfg.DataDir == "" {
		c.missing("history: no data_dir in the config")
		return
	}
	jobs, err := engine.ReadHistory(cfg.DataDir, n)
	if err != nil {
		c.missing("history: " + err.Error())
		return
	}
	var b strings.Builder
	if len(jobs) == 0 {
		b.WriteString("no jobs in the journal\n")
	}
	for _, j := range jobs {
		result := j.Result
		if result == "" {
			result = "unfinished, at " + j.State
		}
		fmt.Fprintf(&b, "job %s: %s %s -> %s: %s", j.ID, j.Product, orNothing(j.From), j.To, result)
		if j.Attempts > 0 {
			fmt.Fprintf(&b, " (recovered %d times)", j.Attempts)
		}
		b.WriteString("\n")
		if j.Reason != "" {
			fmt.Fprintf(&b, "  reason: %s\n", j.Reason)
		}
		for _, ev := range j.Events {
			fmt.Fprintf(&b, "  %3d  %s  %-13s %s\n", ev.Seq, ev.At.UTC().Format(time.RFC3339), ev.State, ev.Message)
		}
		b.WriteString("\n")
	}
	c.addText("history.txt", b.String())
	if jobs == nil {
		jobs = []engine.JobHistory{}
	}
	c.addJSON("history.json", jobs)
}

// drift writes the drift the agent last measured (it checks every few
// minutes and before each job), from the journal.
func (c *collector) drift(cfg *config.Config) {
	if cfg.DataDir == "" {
		return
	}
	st, err := engine.ReadStatus(cfg.DataDir)
	if err != nil {
		c.missing("drift: " + err.Error())
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "installed version: %s\n", orNothing(st.InstalledVersion))
	if len(st.Drift) == 0 {
		b.WriteString("no drift: the running release matches its bundle (as of the agent's last check)\n")
	} else {
		fmt.Fprintf(&b, "%d change(s) by hand in the running release (as of the agent's last check):\n", len(st.Drift))
		for _, d := range st.Drift {
			fmt.Fprintf(&b, "  %s\n", d)
		}
	}
	c.addText("drift.txt", b.String())
}

type diskFact struct {
	Path      string `json:"path"`
	What      string `json:"what"`
	FreeBytes uint64 `json:"free_bytes,omitempty"`
	Error     string `json:"error,omitempty"`
}

type entryFact struct {
	Name string `json:"name"`
	Mode string `json:"mode"`
	Size int64  `json:"size"`
	Link string `json:"link,omitempty"`
}

type facts struct {
	GeneratedAt  time.Time              `json:"generated_at"`
	AgentVersion string                 `json:"agent_version"`
	OS           string                 `json:"os"`
	Arch         string                 `json:"arch"`
	Hostname     string                 `json:"hostname"`
	OSRelease    string                 `json:"os_release,omitempty"`
	Kernel       string                 `json:"kernel,omitempty"`
	UID          int                    `json:"uid"`
	CPUs         int                    `json:"cpus"`
	Disks        []diskFact             `json:"disks"`
	Listings     map[string][]entryFact `json:"listings"`
}

// facts writes the OS, the disks of the agent's directories and what
// those directories hold (names, modes and sizes; never contents).
func (c *collector) facts(cfg *config.Config) {
	f := facts{
		GeneratedAt: c.now, AgentVersion: buildinfo.String(), OS: runtime.GOOS, Arch: runtime.GOARCH,
		UID: os.Getuid(), CPUs: runtime.NumCPU(), Listings: map[string][]entryFact{},
	}
	f.Hostname, _ = os.Hostname()
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		f.OSRelease = string(b)
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		f.Kernel = strings.TrimSpace(string(b))
	}
	dirs := []diskFact{{Path: cfg.InstallDir, What: "install_dir"}, {Path: cfg.DataDir, What: "data_dir"}}
	for i, d := range cfg.Data {
		dirs = append(dirs, diskFact{Path: d.Path, What: fmt.Sprintf("data[%d]", i)})
	}
	for _, d := range dirs {
		if d.Path == "" {
			continue
		}
		p := d.Path
		for { // the nearest existing directory
			if _, err := os.Stat(p); err == nil || filepath.Dir(p) == p {
				break
			}
			p = filepath.Dir(p)
		}
		free, known, err := engine.FreeDisk(p)
		switch {
		case err != nil:
			d.Error = err.Error()
		case !known:
			d.Error = "unknown on this OS"
		default:
			d.FreeBytes = free
		}
		f.Disks = append(f.Disks, d)
	}
	for _, d := range []string{cfg.InstallDir, filepath.Join(cfg.InstallDir, "releases"), cfg.DataDir} {
		if cfg.InstallDir == "" || cfg.DataDir == "" {
			break
		}
		f.Listings[d] = listing(d)
	}
	c.addJSON("facts.json", f)
}

func listing(dir string) []entryFact {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return []entryFact{{Name: "(" + err.Error() + ")"}}
	}
	out := []entryFact{}
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			continue
		}
		ef := entryFact{Name: e.Name(), Mode: fi.Mode().String(), Size: fi.Size()}
		if fi.Mode()&fs.ModeSymlink != 0 {
			ef.Link, _ = os.Readlink(filepath.Join(dir, e.Name()))
		}
		out = append(out, ef)
	}
	return out
}

// logs collects where the agent's output is kept: the service manager's
// (journald through journalctl; /var/log/<name>.log and .err for SysV and
// OpenRC; upstart's), and any LogFiles. The agent keeps no log file of
// its own: `updateagent run` logs to stderr, which the service manager
// keeps.
func (c *collector) logs(ctx context.Context, o Options) {
	found := false
	if runtime.GOOS == "linux" {
		if jc, err := exec.LookPath("journalctl"); err == nil {
			ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			out, err := exec.CommandContext(ctx, jc, "-u", o.ServiceName, "--no-pager", "-o", "short-iso", "-n", "5000").Output()
			cancel()
			if err != nil {
				c.missing("journalctl -u " + o.ServiceName + ": " + err.Error())
			} else if len(bytes.TrimSpace(out)) > 0 && !bytes.Contains(out, []byte("-- No entries --")) {
				c.addText("logs/journalctl-"+o.ServiceName+".txt", string(out))
				found = true
			}
		}
	}
	files := []string{
		"/var/log/" + o.ServiceName + ".log", "/var/log/" + o.ServiceName + ".err",
		"/var/log/upstart/" + o.ServiceName + ".log",
	}
	if runtime.GOOS == "windows" {
		files = nil
		c.missing("logs: on Windows the agent logs to the Event Log (Application, source " + o.ServiceName + "), which this bundle does not include: export it from Event Viewer")
	}
	files = append(files, o.LogFiles...)
	seen := map[string]int{}
	for _, p := range files {
		b, err := tail(p, LogBytes)
		if errors.Is(err, fs.ErrNotExist) && !slices.Contains(o.LogFiles, p) {
			continue
		}
		if err != nil {
			c.missing("log " + p + ": " + err.Error())
			continue
		}
		name := filepath.Base(p)
		seen[name]++
		if seen[name] > 1 {
			name = fmt.Sprintf("%d-%s", seen[name], name)
		}
		c.addText("logs/"+name, string(b))
		found = true
	}
	if !found {
		c.missing("logs: none found (the agent keeps no log file of its own; it logs to stderr, which the service manager keeps: journald, /var/log/" + o.ServiceName + ".log and .err, or the terminal of `updateagent run`)")
	}
}

// tail returns the last n bytes of the file at p.
func tail(p string, n int64) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() > n {
		if _, err := f.Seek(fi.Size()-n, io.SeekStart); err != nil {
			return nil, err
		}
	}
	return io.ReadAll(io.LimitReader(f, n))
}

func (c *collector) readme(configPath string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "updateagent support bundle, made %s by %s\nconfig: %s\n\n", c.now.Format(time.RFC3339), buildinfo.String(), configPath)
	b.WriteString(`config.toml   the agent's config; secrets (enroll_token, passwords in the dsn,
              anything that looks like a token or a password) are replaced by ` + Redacted + `
status.json   what "updateagent status --json" prints
history.txt   the last jobs and every event of each, from the agent's journal
history.json  the same, for tools
drift.txt     what was changed by hand in the running release (the agent's last check)
facts.json    agent version, OS, free disk of install_dir, data_dir and [[data]],
              what those directories hold (names and sizes, never contents)
logs/         the agent's recent log, where the service manager keeps it
`)
	if len(c.notes) > 0 {
		b.WriteString("\nNot collected:\n")
		for _, n := range c.notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	return b.String()
}

func orNothing(v string) string {
	if v == "" {
		return "(nothing)"
	}
	return v
}
