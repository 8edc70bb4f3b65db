package ui

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"sync"
	"time"
)

// A session is a signed-in person: the cookie holds its random ID, never
// the operator token; the server keeps which token it stands for and
// checks that token (revoked? expired?) on every request.
type session struct {
	id      string
	tokenID int64
	csrf    string // every form carries it
	created time.Time
	seen    time.Time
	// flash is a message for the next page shown (what a form did, or
	// why it was refused); flashErr says it is an error.
	flash    string
	flashErr bool
}

// sessions are the live sessions, in memory: a restart signs everyone out.
type sessions struct {
	mu   sync.Mutex
	m    map[string]*session
	idle time.Duration // a session unused this long ends
	max  time.Duration // and any session this old
}

// maxSessions bounds the sessions kept; the oldest-used one goes first.
const maxSessions = 10000

func newSessions(idle, max time.Duration) *sessions {
	return &sessions{m: map[string]*session{}, idle: idle, max: max}
}

func randomID() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

// create starts a session for a token.
func (ss *sessions) create(tokenID int64, now time.Time) *session {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.sweepLocked(now)
	if len(ss.m) >= maxSessions {
		var oldest *session
		for _, s := range ss.m {
			if oldest == nil || s.seen.Before(oldest.seen) {
				oldest = s
			}
		}
		delete(ss.m, oldest.id)
	}
	s := &session{id: randomID(), tokenID: tokenID, csrf: randomID(), created: now, seen: now}
	ss.m[s.id] = s
	return s
}

// get returns the live session with the given ID and marks it used; ok
// is false when there is none (never was, signed out, or expired).
func (ss *sessions) get(id string, now time.Time) (s session, ok bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	p := ss.m[id]
	if p == nil {
		return session{}, false
	}
	if ss.expiredLocked(p, now) {
		delete(ss.m, id)
		return session{}, false
	}
	p.seen = now
	s = *p
	p.flash, p.flashErr = "", false
	return s, true
}

// setFlash leaves a message for the session's next page.
func (ss *sessions) setFlash(id, msg string, isErr bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if p := ss.m[id]; p != nil {
		p.flash, p.flashErr = msg, isErr
	}
}

// end removes a session (sign out, or its token no longer valid).
func (ss *sessions) end(id string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	delete(ss.m, id)
}

// expiredLocked says whether s has ended. mu must be held.
func (ss *sessions) expiredLocked(s *session, now time.Time) bool {
	return now.Sub(s.seen) >= ss.idle || now.Sub(s.created) >= ss.max
}

// sweepLocked drops expired sessions. mu must be held.
func (ss *sessions) sweepLocked(now time.Time) {
	for id, s := range ss.m {
		if ss.expiredLocked(s, now) {
			delete(ss.m, id)
		}
	}
}

// validCSRF compares a form's token with the session's in constant time.
func (s session) validCSRF(got string) bool {
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(s.csrf)) == 1
}
