package api

import (
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/dropless/dropless/pkg/protocol"
)

// Rate limits. Only what a hostile or broken caller does is limited, and
// so that a real fleet never meets a limit:
//
//   - failed authentication (an answer 401: a bad operator token, agent
//     credential or enroll token) per source address: many agents behind
//     one NAT address share it, but only failures count, so good agents
//     there keep working while a bad one is answered 429;
//   - check-ins that cost a write, per agent credential: a report that
//     changes the site's row (state, versions, drift, host), or a job's
//     progress or result. An agent reports a change about once per poll
//     interval at most, far below the limit. A check-in that changes
//     nothing is not charged: it costs no write (only its time is kept
//     in memory, store.Store.Checkin) nor, for a site without a job, any
//     query, so it is about as cheap as /healthz, which is not limited
//     either; a credential hammering them costs what any client
//     hammering the server does. Failed authentication stays limited
//     below;
//   - event batches per agent credential: an agent sends a batch about
//     every 250ms during a job, and faster only to catch up.
//
// Refused calls are answered 429 with Retry-After and a JSON error. Each
// limiter forgets idle entries. The one keyed by source address keeps at
// most MaxKeys, so that callers from many addresses cannot grow its memory
// without bound; the ones keyed by agent credential hold only callers that
// authenticated, so their size is the fleet's (MaxAgents, set far above
// any fleet: past it, new agents would share one bucket).
type Limits struct {
	AuthFailures Rate // per source address (IPv6: per /64)
	Checkins     Rate // check-ins that write, per agent credential
	Events       Rate // per agent credential
	MaxKeys      int  // entries of the per-address limiter
	MaxAgents    int  // entries of each per-credential limiter
}

// Rate is a token bucket: Burst calls at once, then PerSecond.
type Rate struct {
	PerSecond float64
	Burst     int
}

// DefaultLimits are the limits a server runs with.
var DefaultLimits = Limits{
	AuthFailures: Rate{PerSecond: 2, Burst: 100},
	Checkins:     Rate{PerSecond: 1, Burst: 10},
	Events:       Rate{PerSecond: 5, Burst: 30},
	MaxKeys:      10000,
	MaxAgents:    1 << 20,
}

// logEvery is how often a source's refused authentications are logged:
// one summary line per source per interval.
const logEvery = time.Minute

// keyLimiter is a rate limiter per key with bounded memory.
type keyLimiter struct {
	rate    Rate
	maxKeys int
	now     func() time.Time

	mu        sync.Mutex
	entries   map[string]*limEntry
	overflow  *limEntry // shared by new keys while the map is full
	lastSweep time.Time
	// onEvict is called (mu held) for each entry the sweep drops.
	onEvict func(key string, e *limEntry)
}

type limEntry struct {
	lim  *rate.Limiter
	last time.Time // last use
	// Refused authentication, for the log: failures and 429 answers
	// since the last line about this source, and when that was.
	failures, refused int
	logged            time.Time
}

func newKeyLimiter(r Rate, maxKeys int, now func() time.Time) *keyLimiter {
	return &keyLimiter{rate: r, maxKeys: max(maxKeys, 1), now: now, entries: map[string]*limEntry{}}
}

// idleAfter is how long an unused entry is kept: past it, its bucket
// would be full again, so forgetting it changes nothing.
func (l *keyLimiter) idleAfter() time.Duration {
	full := time.Duration(float64(l.rate.Burst) / l.rate.PerSecond * float64(time.Second))
	return max(full, time.Minute) + logEvery
}

// entryLocked returns key's entry, making it if needed. mu must be held.
func (l *keyLimiter) entryLocked(key string, now time.Time) *limEntry {
	if e, ok := l.entries[key]; ok {
		e.last = now
		return e
	}
	if now.Sub(l.lastSweep) >= time.Minute || len(l.entries) >= l.maxKeys {
		l.sweepLocked(now)
	}
	if len(l.entries) >= l.maxKeys {
		if l.overflow == nil {
			l.overflow = &limEntry{lim: rate.NewLimiter(rate.Limit(l.rate.PerSecond), l.rate.Burst)}
		}
		l.overflow.last = now
		return l.overflow
	}
	e := &limEntry{lim: rate.NewLimiter(rate.Limit(l.rate.PerSecond), l.rate.Burst), last: now}
	l.entries[key] = e
	return e
}

// sweepLocked forgets idle entries. mu must be held.
func (l *keyLimiter) sweepLocked(now time.Time) {
	if now.Sub(l.lastSweep) < time.Second {
		return // a full map of busy keys: do not sweep on every call
	}
	l.lastSweep = now
	idle := l.idleAfter()
	for k, e := range l.entries {
		if now.Sub(e.last) >= idle {
			if l.onEvict != nil {
				l.onEvict(k, e)
			}
			delete(l.entries, k)
		}
	}
}

// allow takes one token for key; when there is none it says how long
// until there is.
func (l *keyLimiter) allow(key string) (bool, time.Duration) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.entryLocked(key, now)
	return take(e, now)
}

func take(e *limEntry, now time.Time) (bool, time.Duration) {
	if e.lim.AllowN(now, 1) {
		return true, 0
	}
	missing := 1 - e.lim.TokensAt(now)
	return false, time.Duration(missing / float64(e.lim.Limit()) * float64(time.Second))
}

// size is how many keys the limiter holds.
func (l *keyLimiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.entries)
}

// inFlight admits one request at a time per key.
type inFlight struct {
	mu   sync.Mutex
	busy map[string]bool
}

func (f *inFlight) enter(key string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.busy[key] {
		return false
	}
	if f.busy == nil {
		f.busy = map[string]bool{}
	}
	f.busy[key] = true
	return true
}

func (f *inFlight) leave(key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.busy, key)
}

// limiters are a server's rate limiters.
type limiters struct {
	auth, checkins, events *keyLimiter
	eventsInFlight         inFlight // per agent credential
	log                    *slog.Logger
	// logLines bounds the refused-authentication log across all sources;
	// lines it holds back are counted into the next one.
	logLines   *rate.Limiter
	unreported int // failures of sources whose line was held back
}

func newLimiters(l Limits, log *slog.Logger, now func() time.Time) *limiters {
	if now == nil {
		now = time.Now
	}
	ls := &limiters{
		auth:     newKeyLimiter(l.AuthFailures, l.MaxKeys, now),
		checkins: newKeyLimiter(l.Checkins, l.MaxAgents, now),
		events:   newKeyLimiter(l.Events, l.MaxAgents, now),
		log:      log,
		logLines: rate.NewLimiter(1, 10),
	}
	// A source that stopped failing gets its last summary when forgotten.
	ls.auth.onEvict = func(key string, e *limEntry) {
		if e.failures > 0 {
			ls.logRefusedLocked(key, e, now())
		}
	}
	return ls
}

// authFailed counts a failed authentication from source and says whether
// it is still answered as such (401) or refused (429), and for how long.
func (ls *limiters) authFailed(source, path string) (bool, time.Duration) {
	l := ls.auth
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.entryLocked(source, now)
	ok, retry := take(e, now)
	e.failures++
	if !ok {
		e.refused++
	}
	if now.Sub(e.logged) >= logEvery {
		ls.logRefusedLocked(source, e, now, "path", path)
	}
	return ok, retry
}

// logRefusedLocked writes the summary line of source's refused
// authentications, unless too many lines were written lately. The auth
// limiter's mu must be held.
func (ls *limiters) logRefusedLocked(source string, e *limEntry, now time.Time, extra ...any) {
	if !ls.logLines.AllowN(now, 1) {
		ls.unreported += e.failures
		e.failures, e.refused = 0, 0
		return
	}
	args := []any{"source", source, "failures", e.failures, "answered_429", e.refused}
	if !e.logged.IsZero() {
		args = append(args, "since", e.logged.UTC().Format(time.RFC3339))
	}
	if ls.unreported > 0 {
		args = append(args, "failures_from_other_sources", ls.unreported)
		ls.unreported = 0
	}
	ls.log.Warn("authentication refused", append(args, extra...)...)
	e.failures, e.refused, e.logged = 0, 0, now
}

// sourceKey is the rate-limit key of a request's source address: the IP,
// or for IPv6 its /64 (one host usually holds a whole /64).
func sourceKey(r *http.Request) string {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	a := ap.Addr().Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

// tooMany answers 429 with Retry-After (whole seconds, at least 1).
func tooMany(w http.ResponseWriter, retry time.Duration, msg string) {
	secs := max(1, int(math.Ceil(retry.Seconds())))
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	writeError(w, http.StatusTooManyRequests, protocol.CodeTooManyRequests, fmt.Sprintf("%s: try again in %d s", msg, secs))
}

// limitAuthFailures wraps h: an answer 401 counts as a failed
// authentication of the request's source address, and past that
// source's limit it becomes a 429.
func (ls *limiters) limitAuthFailures(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(&authWatch{ResponseWriter: w, ls: ls, r: r}, r)
	})
}

// authWatch turns a handler's 401 into a 429 once the source is past its
// limit of failed authentications.
type authWatch struct {
	http.ResponseWriter
	ls      *limiters
	r       *http.Request
	wrote   bool
	swallow bool // the handler's own answer is replaced
}

func (w *authWatch) WriteHeader(code int) {
	if w.wrote {
		w.ResponseWriter.WriteHeader(code) // let net/http report the misuse
		return
	}
	w.wrote = true
	if code == http.StatusUnauthorized {
		src := sourceKey(w.r)
		if ok, retry := w.ls.authFailed(src, w.r.URL.Path); !ok {
			w.swallow = true
			w.Header().Del("WWW-Authenticate")
			tooMany(w.ResponseWriter, retry, "too many failed authentications from "+src)
			return
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *authWatch) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	if w.swallow {
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (deadlines).
func (w *authWatch) Unwrap() http.ResponseWriter { return w.ResponseWriter }
