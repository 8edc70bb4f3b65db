// Command hello is the reference of perf/checkin-throughput: a bare
// net/http server that answers every request with a small JSON body, as
// fast as Go's HTTP stack goes on this machine. It prints
// "listening http://ADDR" once it accepts connections.
package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"

	"github.com/dropless/dropless/testenv/perf/tools/internal/loopback"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "loopback address to listen on")
	flag.Parse()
	ln, err := loopback.Listen(*listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "hello:", err)
		os.Exit(2)
	}
	body := []byte("{\n  \"poll_seconds\": 30,\n  \"window\": {\n    \"open\": true\n  }\n}\n")
	err = http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	}))
	fmt.Fprintln(os.Stderr, "hello:", err)
	os.Exit(1)
}
