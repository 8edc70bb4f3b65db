//go:build unix

// Command sampleapp is the managed application of the test environment: a
// small HTTP service with a version and a /health endpoint, shipped inside
// release bundles and stopped, started and health-checked by the agent.
//
//	sampleapp start --listen ADDR --pidfile FILE [--log FILE]   start in the background, return once listening
//	sampleapp stop --pidfile FILE                               stop it (SIGTERM, then wait)
//	sampleapp serve --listen ADDR                               serve in the foreground
//
// It reads its version from the file VERSION in its working directory (the
// release directory). A release that fails its health check is one whose
// directory holds a file named "unhealthy": /health then answers 503. A
// file "startup_delay" (e.g. "2s") makes it slow to start. A file
// "data_writes" holding a directory makes it write its data there as it
// starts, as an app writes uploads: it adds from-<version>.txt and a
// directory cache-<version>/, rewrites shared.txt in place (the same
// inode) and removes old.txt.
//
// An app that migrates its own database at start (like PocketBase), opt-in:
// with SAMPLEAPP_DB naming a SQLite file in its environment, a release
// whose directory holds "self_migrate.sql" runs that SQL on the file with
// the sqlite3 command before it serves (the command, not a driver, keeps
// the app, which every test bundle carries, small).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: sampleapp start|stop|serve ...")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "start":
		err = start(os.Args[2:])
	case "stop":
		err = stop(os.Args[2:])
	case "serve":
		err = serve(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sampleapp:", err)
		os.Exit(1)
	}
}

func start(args []string) error {
	fs := flag.NewFlagSet("start", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:9000", "address")
	pidfile := fs.String("pidfile", "", "pid file")
	logfile := fs.String("log", "", "log file (default: sampleapp.log beside the pid file)")
	fs.Parse(args)
	if *pidfile == "" {
		return errors.New("--pidfile is required")
	}
	if *logfile == "" {
		*logfile = filepath.Join(filepath.Dir(*pidfile), "sampleapp.log")
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	logf, err := os.OpenFile(*logfile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(exe, "serve", "--listen", *listen)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // outlive the agent's command
	if err := cmd.Start(); err != nil {
		return err
	}
	if err := os.WriteFile(*pidfile, []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	// Return once it listens, as `systemctl start` would.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return fmt.Errorf("exited at start: %v (see %s)", err, *logfile)
		default:
		}
		if c, err := net.DialTimeout("tcp", *listen, 100*time.Millisecond); err == nil {
			c.Close()
			cmd.Process.Release()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("not listening on %s after 10s", *listen)
}

func stop(args []string) error {
	fs := flag.NewFlagSet("stop", flag.ExitOnError)
	pidfile := fs.String("pidfile", "", "pid file")
	fs.Parse(args)
	b, err := os.ReadFile(*pidfile)
	if errors.Is(err, os.ErrNotExist) {
		return nil // not running
	}
	if err != nil {
		return err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("pid file %s: %v", *pidfile, err)
	}
	p, _ := os.FindProcess(pid)
	if err := p.Signal(syscall.SIGTERM); err != nil {
		os.Remove(*pidfile)
		return nil // already gone
	}
	for i := 0; i < 500; i++ {
		if err := p.Signal(syscall.Signal(0)); err != nil {
			os.Remove(*pidfile)
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.Signal(syscall.SIGKILL)
	os.Remove(*pidfile)
	return nil
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:9000", "address")
	fs.Parse(args)
	wd, _ := os.Getwd()
	version := "unknown"
	if b, err := os.ReadFile("VERSION"); err == nil {
		version = strings.TrimSpace(string(b))
	}
	if err := selfMigrate(); err != nil {
		return err
	}
	_, err := os.Stat("unhealthy")
	healthy := err != nil
	// A slow release: startup_delay holds a duration to wait before serving.
	if b, err := os.ReadFile("startup_delay"); err == nil {
		if d, err := time.ParseDuration(strings.TrimSpace(string(b))); err == nil {
			time.Sleep(d)
		}
	}
	if b, err := os.ReadFile("data_writes"); err == nil {
		if err := writeData(strings.TrimSpace(string(b)), version); err != nil {
			return fmt.Errorf("write data: %w", err)
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		if !healthy {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "version %s is unhealthy\n", version)
			return
		}
		fmt.Fprintf(w, "%s\n", version)
	})
	mux.HandleFunc("/version", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, version) })
	srv := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	ctx, stopSignals := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stopSignals()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	fmt.Printf("sampleapp %s serving on %s from %s (healthy=%t)\n", version, *listen, wd, healthy)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// selfMigrate runs the release's self_migrate.sql on the SQLite file
// SAMPLEAPP_DB names, when both are there.
func selfMigrate() error {
	db := os.Getenv("SAMPLEAPP_DB")
	script, err := os.Open("self_migrate.sql")
	if db == "" || err != nil {
		return nil
	}
	defer script.Close()
	cmd := exec.Command("sqlite3", "-bail", db)
	cmd.Stdin = script
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("self_migrate.sql on %s: %v: %s", db, err, out)
	}
	fmt.Printf("migrated %s at start\n", db)
	return nil
}

// writeData changes the data in dir as version's first start would.
func writeData(dir, version string) error {
	if err := os.WriteFile(filepath.Join(dir, "from-"+version+".txt"), []byte("written by "+version+"\n"), 0o644); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dir, "cache-"+version), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(dir, "shared.txt"), os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt([]byte("rewritten in place by "+version), 0); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(dir, "old.txt")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
