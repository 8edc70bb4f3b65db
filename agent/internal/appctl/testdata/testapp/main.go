// Command testapp is the managed application of the appctl and engine
// tests: a tiny HTTP server standing in for a vendor's product.
//
//	testapp -addr 127.0.0.1:PORT -pidfile /abs/app.pid
//
// It answers GET /health with 200 and its version, or 503 while a file named
// "unhealthy" exists in its working directory (so a "bad release" is a bundle
// that ships files/unhealthy), and GET /version with the content of the file
// VERSION in its working directory. Once listening it writes its pid to
// -pidfile; on SIGTERM or SIGINT it stops listening, removes the pidfile and
// exits, so a stop command can wait for the pidfile to disappear.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	pidfile := flag.String("pidfile", "", "write the pid here once listening")
	flag.Parse()

	version := "unknown"
	if b, err := os.ReadFile("VERSION"); err == nil {
		version = strings.TrimSpace(string(b))
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatalf("testapp %s: %v", version, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		if _, err := os.Stat("unhealthy"); err == nil {
			http.Error(w, "unhealthy "+version, http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok", version)
	})
	mux.HandleFunc("/version", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, version)
	})
	srv := &http.Server{Handler: mux}

	if *pidfile != "" {
		tmp := *pidfile + ".tmp"
		if err := os.WriteFile(tmp, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
			log.Fatal(err)
		}
		if err := os.Rename(tmp, *pidfile); err != nil {
			log.Fatal(err)
		}
	}
	log.Printf("testapp %s listening on %s", version, ln.Addr())

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Print(err)
	}
	if *pidfile != "" {
		_ = os.Remove(*pidfile)
	}
	log.Printf("testapp %s stopped", version)
}
