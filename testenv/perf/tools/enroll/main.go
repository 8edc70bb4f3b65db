// Command enroll enrolls many simulated agents through the real agent API
// (POST /api/v1/agent/enroll with an enroll token from
// `updateserver enroll-token create`) and appends their credentials to a
// file, one per line, in site order. Bounded by --n and --timeout.
//
//	enroll --server http://127.0.0.1:PORT --token dle_... --client perf \
//	       --product perf-app --n 1000 --out creds.txt
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dropless/dropless/testenv/perf/tools/internal/loopback"
)

func main() {
	server := flag.String("server", "", "update server URL (loopback only)")
	token := flag.String("token", "", "enroll token")
	client := flag.String("client", "perf", "client the token belongs to")
	product := flag.String("product", "perf-app", "product of the simulated sites")
	prefix := flag.String("site-prefix", "perf-site", "site names are PREFIX-NNNNNN")
	start := flag.Int("start", 0, "number of the first site")
	n := flag.Int("n", 100, "agents to enroll")
	par := flag.Int("parallel", 16, "enrollments in flight")
	out := flag.String("out", "", "file the credentials are appended to")
	timeout := flag.Duration("timeout", 10*time.Minute, "give up after this long")
	flag.Parse()
	if _, err := loopback.CheckURL(*server); err != nil || *token == "" || *out == "" || *n < 1 || *par < 1 {
		fmt.Fprintln(os.Stderr, "enroll: need --server (loopback http URL), --token, --out, --n >= 1", err)
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	hc := &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: *par, MaxConnsPerHost: *par}}
	creds := make([]string, *n)
	var next, done atomic.Int64
	var firstErr error
	var once sync.Once
	t0 := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < *par; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= *n {
					return
				}
				site := fmt.Sprintf("%s-%06d", *prefix, *start+i)
				cred, err := enroll(ctx, hc, *server, *token, site, *client, *product)
				if err != nil {
					once.Do(func() { firstErr = fmt.Errorf("site %s: %w", site, err); cancel() })
					return
				}
				creds[i] = cred
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	el := time.Since(t0)
	if firstErr == nil && ctx.Err() != nil {
		firstErr = fmt.Errorf("timed out after %v with %d of %d enrolled", *timeout, done.Load(), *n)
	}
	if firstErr != nil {
		fmt.Fprintln(os.Stderr, "enroll:", firstErr)
		os.Exit(1)
	}
	f, err := os.OpenFile(*out, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		fmt.Fprintln(os.Stderr, "enroll:", err)
		os.Exit(1)
	}
	bw := bufio.NewWriter(f)
	for _, c := range creds {
		bw.WriteString(c + "\n")
	}
	if err := bw.Flush(); err != nil {
		fmt.Fprintln(os.Stderr, "enroll:", err)
		os.Exit(1)
	}
	f.Close()
	fmt.Printf("ENROLL n=%d seconds=%.3f per_second=%.1f\n", *n, el.Seconds(), float64(*n)/el.Seconds())
}

func enroll(ctx context.Context, hc *http.Client, server, token, site, client, product string) (string, error) {
	body, _ := json.Marshal(map[string]string{"token": token, "site": site, "client": client, "product": product, "hostname": site})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(server, "/")+"/api/v1/agent/enroll", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode >= 300 {
		return "", fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(b))
	}
	var er struct {
		Credential string `json:"credential"`
	}
	if err := json.Unmarshal(b, &er); err != nil || er.Credential == "" {
		return "", fmt.Errorf("no credential in %q", b)
	}
	return er.Credential, nil
}
