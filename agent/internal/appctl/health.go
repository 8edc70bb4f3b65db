package appctl

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/dropless/dropless/agent/internal/config"
)

// HealthError is the error of a health check that did not pass in time.
type HealthError struct {
	// Last is what the check saw on its last try, e.g. "health_url
	// answered 503" or "health_cmd exited 1: database is locked".
	Last string
	// After is how long the check was tried: the health timeout.
	After time.Duration
}

func (e *HealthError) Error() string {
	return fmt.Sprintf("%s after %s", e.Last, e.After)
}

// health polls a health URL or command.
type health struct {
	url     string
	cmd     []string
	timeout time.Duration
	run     *runner
	client  *http.Client
}

// maxAttempt bounds one try of the health check, so a hanging endpoint is
// tried again rather than eating the whole timeout.
const maxAttempt = 5 * time.Second

func newHealth(cfg config.App, timeout time.Duration, r *runner) (*health, error) {
	switch {
	case cfg.HealthURL == "" && len(cfg.HealthCmd) == 0:
		return nil, errors.New("app: set health_url (answers 2xx when healthy) or health_cmd (exits 0 when healthy)")
	case cfg.HealthURL != "" && len(cfg.HealthCmd) > 0:
		return nil, errors.New("app: set health_url or health_cmd, not both")
	case cfg.HealthURL != "":
		u, err := url.Parse(cfg.HealthURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("app.health_url %q: not an http:// or https:// URL", cfg.HealthURL)
		}
	}
	return &health{
		url:     cfg.HealthURL,
		cmd:     cfg.HealthCmd,
		timeout: timeout,
		run:     r,
		client: &http.Client{
			// No proxy: the application is on this machine, and a proxy
			// from the environment must not answer for it.
			Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
		},
	}, nil
}

// wait polls the check every pollInterval until it passes, the timeout runs
// out (a *HealthError naming what it last saw) or ctx ends (ctx's error).
func (h *health) wait(ctx context.Context) error {
	deadline := time.Now().Add(h.timeout)
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		left := time.Until(deadline)
		attempt := min(left, maxAttempt)
		last := h.once(ctx, attempt)
		if last == "" {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return &HealthError{Last: last, After: h.timeout}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// once tries the check once within d and returns "" when it passed, or
// what it saw.
func (h *health) once(ctx context.Context, d time.Duration) string {
	if d < 100*time.Millisecond {
		d = 100 * time.Millisecond
	}
	actx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	if h.url != "" {
		return h.onceURL(actx, d)
	}
	// Each try is logged at debug level: a check polled five times a
	// second would drown the log; its last line ends up in the error.
	r := *h.run
	r.timeout = d
	r.level = slog.LevelDebug
	_, err := r.run(actx, "health_cmd", h.cmd, false)
	switch {
	case err == nil:
		return ""
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Sprintf("health_cmd did not finish within %s", d.Round(time.Millisecond))
	}
	return err.Error()
}

func (h *health) onceURL(ctx context.Context, d time.Duration) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.url, nil)
	if err != nil {
		return "health_url: " + err.Error()
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return "health_url " + h.url + ": " + describeNetErr(err, d)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return ""
	}
	msg := fmt.Sprintf("health_url answered %d", resp.StatusCode)
	line, _ := bufio.NewReader(io.LimitReader(resp.Body, 512)).ReadString('\n')
	if line = strings.TrimSpace(line); line != "" {
		msg += " (" + line + ")"
	}
	return msg
}

// describeNetErr says in a few words why a request got no answer.
func describeNetErr(err error, d time.Duration) string {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Sprintf("no answer within %s", d.Round(time.Millisecond))
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Sprintf("no answer within %s", d.Round(time.Millisecond))
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return err.Error()
}
