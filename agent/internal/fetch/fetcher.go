package fetch

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"sync"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/fetcher"

	"github.com/dropless/dropless/pkg/tlstrust"
)

// errStalled is the cause of a request canceled because no data arrived
// for the stall timeout.
var errStalled = errors.New("stalled: no data received")

// errShortBody marks a response that ended cleanly before the length we
// were promised.
var errShortBody = errors.New("response ended early")

// defaultHTTPClient has timeouts for each phase of a request but no overall
// one: a bundle of several GB may take hours. Downloads watch for stalls
// themselves. With tlsConfig (the agent's), certificate failures are
// explained (tlstrust.Explain).
func defaultHTTPClient(tlsConfig *tls.Config) *http.Client {
	tr := &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{
			Timeout:   30 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          10,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	if tlsConfig != nil {
		// A copy: HTTP/2 adds "h2" to the NextProtos of the config it
		// is given, which must not leak into the agent API's transport.
		tr.TLSClientConfig = tlsConfig.Clone()
	}
	if tlsConfig == nil {
		return &http.Client{Transport: tr}
	}
	return &http.Client{Transport: tlstrust.Transport(tr, "the repository's server", "set ca_file to the CA that signed it")}
}

// fetchRecord is the last metadata file the fetcher was asked for: the
// role it belongs to, its URL and, if it arrived, its bytes. go-tuf's
// errors do not always name the role; this does.
type fetchRecord struct {
	role string
	url  string
	body []byte
}

// httpFetcher is go-tuf's fetcher.Fetcher on our *http.Client. go-tuf's
// API has no context, so the fetcher carries one, bound by the Client
// around each call into the updater; unbound, it refuses to fetch.
type httpFetcher struct {
	client   *http.Client
	log      *slog.Logger
	timeout  time.Duration    // per metadata request
	attempts int              // tries per file, for transient failures
	backoff  time.Duration    // first pause between tries, doubled each time
	failed   func(url string) // a try got no answer or a 5xx (Config.Unreachable)

	mu   sync.Mutex
	ctx  context.Context
	last fetchRecord
}

var _ fetcher.Fetcher = (*httpFetcher)(nil)

// bind makes f fetch under ctx until the returned func is called.
func (f *httpFetcher) bind(ctx context.Context) (unbind func()) {
	f.mu.Lock()
	f.ctx = ctx
	f.last = fetchRecord{}
	f.mu.Unlock()
	return func() {
		f.mu.Lock()
		f.ctx = nil
		f.mu.Unlock()
	}
}

// lastFetch returns the last metadata file asked for.
func (f *httpFetcher) lastFetch() fetchRecord {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last
}

// DownloadFile fetches urlPath, reading at most maxLength+1 bytes of it:
// more than maxLength is an *metadata.ErrDownloadLengthMismatch, and an
// HTTP status other than 200 an *metadata.ErrDownloadHTTP carrying it (the
// updater takes a 404 for N+1.root.json as "no newer root"; a 403 for it
// is reported as a 404 too). Network
// failures and 408/429/5xx are tried again a few times; cancellation of the
// bound context stops it at once.
func (f *httpFetcher) DownloadFile(urlPath string, maxLength int64, _ time.Duration) ([]byte, error) {
	f.mu.Lock()
	ctx := f.ctx
	f.last = fetchRecord{role: roleFromURL(urlPath), url: urlPath}
	f.mu.Unlock()
	if ctx == nil {
		return nil, errors.New("fetch: go-tuf fetcher used outside a Client call")
	}
	var data []byte
	var err error
	for attempt := 1; ; attempt++ {
		data, err = f.get(ctx, urlPath, maxLength)
		if err == nil || attempt >= f.attempts || !f.retryable(ctx, err) {
			break
		}
		f.log.Debug("metadata download failed; trying again", "url", urlPath, "attempt", attempt, "err", err)
		if f.failed != nil {
			f.failed(urlPath)
		}
		if serr := sleep(ctx, backoffDelay(f.backoff, attempt)); serr != nil {
			err = serr
			break
		}
	}
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.last.body = data
	f.mu.Unlock()
	return data, nil
}

func (f *httpFetcher) retryable(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	if e, ok := errors.AsType[*metadata.ErrDownloadHTTP](err); ok {
		return statusRetryable(e.StatusCode)
	}
	if _, ok := errors.AsType[*metadata.ErrDownloadLengthMismatch](err); ok {
		return false
	}
	return true
}

func (f *httpFetcher) get(ctx context.Context, urlPath string, maxLength int64) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, urlPath, nil)
	if err != nil {
		return nil, err
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusForbidden && reVersionedRoot.MatchString(path.Base(req.URL.Path)) {
		// A mirror on S3 without list permission answers 403 for a
		// missing N.root.json. go-tuf's updater takes only a 404 as "no
		// newer root"; python-tuf takes both, and so do we.
		return nil, &metadata.ErrDownloadHTTP{StatusCode: http.StatusNotFound, URL: urlPath}
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &metadata.ErrDownloadHTTP{StatusCode: resp.StatusCode, URL: urlPath}
	}
	if resp.ContentLength > maxLength {
		return nil, &metadata.ErrDownloadLengthMismatch{Msg: fmt.Sprintf("%s is %d bytes, more than the %d allowed", urlPath, resp.ContentLength, maxLength)}
	}
	// One byte more than allowed tells "too long" from "just right".
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxLength+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > maxLength {
		return nil, &metadata.ErrDownloadLengthMismatch{Msg: fmt.Sprintf("%s is more than the %d bytes allowed", urlPath, maxLength)}
	}
	return data, nil
}

// reMetadataName matches go-tuf's metadata file names: role.json and
// N.role.json, the role path-escaped.
var reMetadataName = regexp.MustCompile(`^(?:[0-9]+\.)?(.+)\.json$`)

var reVersionedRoot = regexp.MustCompile(`^[0-9]+\.root\.json$`)

// roleFromURL names the role a metadata URL belongs to.
func roleFromURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return ""
	}
	m := reMetadataName.FindStringSubmatch(path.Base(p.EscapedPath()))
	if m == nil {
		return ""
	}
	if r, err := url.PathUnescape(m[1]); err == nil {
		return r
	}
	return m[1]
}

// backoffDelay is base doubled for each earlier attempt, at most 10s.
func backoffDelay(base time.Duration, attempt int) time.Duration {
	d := base
	for i := 1; i < attempt && d < 10*time.Second; i++ {
		d *= 2
	}
	return min(d, 10*time.Second)
}

// sleep waits d or until ctx ends, whichever comes first.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
