package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
)

// NewEnrollToken is an enroll token to store: a one-time or few-times
// token a site's agent exchanges for its own credential.
type NewEnrollToken struct {
	Secret, Client string
	// Site, when set, is the only site name the token enrolls; Replace
	// (only with Site) lets it enroll that site again when it is already
	// enrolled for Client.
	Site      string
	Replace   bool
	ExpiresAt time.Time
	Uses      int
	By        string
}

// CreateEnrollToken stores an enroll token, audits it and returns its ID.
func (s *Store) CreateEnrollToken(ctx context.Context, now time.Time, et NewEnrollToken) (int64, error) {
	var id int64
	err := s.tx(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRow(`INSERT INTO enroll_tokens (hash, client, site, replace_site, expires_at, uses_left, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
			HashSecret(et.Secret), et.Client, et.Site, et.Replace, formatTime(et.ExpiresAt), et.Uses, formatTime(now), et.By).Scan(&id)
		if err != nil {
			return err
		}
		return insertAudit(ctx, tx, now, Audit{Actor: et.By, Action: "enroll_token.create", Object: fmt.Sprintf("enroll token %d", id),
			Detail: fmt.Sprintf("client=%s site=%s replace=%t uses=%d expires=%s", et.Client, et.Site, et.Replace, et.Uses, formatTime(et.ExpiresAt))})
	})
	if err != nil {
		return 0, fmt.Errorf("create enroll token: %w", err)
	}
	return id, nil
}

// ListEnrollTokens returns every enroll token, revoked and used-up ones
// too, oldest first.
func (s *Store) ListEnrollTokens(ctx context.Context) ([]protocol.EnrollTokenInfo, error) {
	rows, err := s.query(ctx,
		`SELECT id, client, site, replace_site, uses_left, expires_at, created_at, created_by, revoked_at, revoked_by FROM enroll_tokens ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []protocol.EnrollTokenInfo{}
	for rows.Next() {
		var t protocol.EnrollTokenInfo
		var exp, created string
		var revoked sql.NullString
		if err := rows.Scan(&t.ID, &t.Client, &t.Site, &t.Replace, &t.UsesLeft, &exp, &created, &t.CreatedBy, &revoked, &t.RevokedBy); err != nil {
			return nil, err
		}
		t.ExpiresAt, t.CreatedAt, t.RevokedAt = parseTime(exp), parseTime(created), nullTime(revoked)
		out = append(out, t)
	}
	return out, rows.Err()
}

// ErrAlreadyRevoked: the token was revoked before.
var ErrAlreadyRevoked = fmt.Errorf("already revoked: %w", ErrConflict)

// RevokeEnrollToken revokes enroll token id and audits it: no agent
// enrolls with it from then on. ErrNotFound when there is no such token,
// ErrAlreadyRevoked when it was revoked before.
func (s *Store) RevokeEnrollToken(ctx context.Context, now time.Time, id int64, by string) error {
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var client, site string
		var revoked sql.NullString
		err := tx.QueryRow(`SELECT client, site, revoked_at FROM enroll_tokens WHERE id = ?`, id).Scan(&client, &site, &revoked)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return ErrNotFound
		case err != nil:
			return err
		case revoked.Valid:
			return ErrAlreadyRevoked
		}
		if _, err := tx.Exec(`UPDATE enroll_tokens SET revoked_at = ?, revoked_by = ? WHERE id = ?`, formatTime(now), by, id); err != nil {
			return err
		}
		return insertAudit(ctx, tx, now, Audit{Actor: by, Action: "enroll_token.revoke", Object: fmt.Sprintf("enroll token %d", id),
			Detail: fmt.Sprintf("client=%s site=%s", client, site)})
	})
	if err != nil {
		return fmt.Errorf("revoke enroll token %d: %w", id, err)
	}
	return nil
}

// Enrollment errors, each a reason the agent is refused. None of them says
// anything about a site the caller may not enroll.
var (
	ErrEnrollTokenInvalid = errors.New("the enroll token is not valid")
	ErrEnrollTokenExpired = errors.New("the enroll token has expired")
	ErrEnrollTokenUsed    = errors.New("the enroll token has been used up")
	ErrEnrollTokenRevoked = errors.New("the enroll token was revoked")
	ErrWrongClient        = errors.New("the enroll token is for another client")
	// ErrWrongSite: the token is bound to another site name.
	ErrWrongSite = errors.New("the enroll token is for another site")
	// ErrSiteEnrolled: the site is enrolled and the token may not replace
	// it, whoever the site belongs to.
	ErrSiteEnrolled = fmt.Errorf("the site is already enrolled: %w", ErrConflict)
	// ErrWrongProduct: a replace token's agent claims another product than
	// the site's.
	ErrWrongProduct = fmt.Errorf("the site runs another product: %w", ErrConflict)
)

// EnrollRefusal carries what the token allows, for the caller to explain a
// refusal; it never carries anything about the existing site but, for
// ErrWrongProduct (asked with a replace token of the site's own client),
// its product.
type EnrollRefusal struct {
	Err         error
	TokenClient string
	TokenSite   string
	SiteProduct string
}

func (e *EnrollRefusal) Error() string { return e.Err.Error() }
func (e *EnrollRefusal) Unwrap() error { return e.Err }

// Enroll registers the site with the enroll token and consumes one use of
// it, storing only the credential's hash. A site not yet enrolled may be
// enrolled with any live token of the request's client (bound to that site
// name if bound at all). An enrolled site is enrolled again (its old
// credential stops working) only with a token made for that site with
// Replace, of the site's client: replaced is then true. A refused
// enrollment consumes nothing.
//
// Enrollments asked at once are written together (enrollBatch): a
// hundred thousand agents enrolling the same day are a few statements per
// few hundred of them, not five each behind the write lock.
func (s *Store) Enroll(ctx context.Context, now time.Time, token string, req protocol.EnrollRequest, credential string) (replaced bool, err error) {
	r := &enrollReq{ctx: ctx, now: now, token: token, req: req, credHash: HashSecret(credential), done: make(chan struct{})}
	q := &s.c.enroll
	q.mu.Lock()
	q.pending = append(q.pending, r)
	if !q.running {
		q.running = true
		go s.enrollBatches()
	}
	q.mu.Unlock()
	// Once queued, wait for the outcome even if ctx ends: the caller must
	// not guess whether its enrollment landed.
	<-r.done
	return r.replaced, r.err
}

// enrollQueue holds the enrollments waiting for their batch; running: a
// goroutine writes batches (enrollBatches) until none waits.
type enrollQueue struct {
	mu      sync.Mutex
	pending []*enrollReq
	running bool
}

// enrollReq is one agent's enrollment and, once done is closed, its outcome.
type enrollReq struct {
	ctx      context.Context
	now      time.Time
	token    string
	req      protocol.EnrollRequest
	credHash string
	replaced bool
	err      error
	done     chan struct{}
}

// maxEnrollBatch bounds the enrollments of one write.
const maxEnrollBatch = 1000

// enrollBatches writes the waiting enrollments, a batch at a time (the
// ones that queue meanwhile make the next), until none waits.
func (s *Store) enrollBatches() {
	q := &s.c.enroll
	for {
		q.mu.Lock()
		batch := q.pending[:min(len(q.pending), maxEnrollBatch)]
		q.pending = q.pending[len(batch):]
		if len(batch) == 0 {
			q.pending, q.running = nil, false
			q.mu.Unlock()
			return
		}
		q.mu.Unlock()
		s.enrollBatch(batch)
	}
}

// enrollBatch writes a batch of enrollments in one write transaction:
// their tokens and sites read in one query each, each decided in Go in
// order (an enrollment sees the token uses and sites of those before it),
// then the new sites, the tokens' uses and the audit entries in a few
// multi-row statements. A refusal is that request's outcome alone; a
// failure of the transaction is every request's.
func (s *Store) enrollBatch(batch []*enrollReq) {
	s.c.credMu.RLock()
	gen := s.c.credGen
	s.c.credMu.RUnlock()
	outcome := make([]error, len(batch))
	replaced := make([]bool, len(batch))
	err := s.tx(context.Background(), func(tx *sql.Tx) error {
		clear(outcome)
		clear(replaced)
		return enrollTx(tx, s, batch, outcome, replaced)
	})
	for i, r := range batch {
		r.err, r.replaced = outcome[i], replaced[i]
		if err != nil {
			r.err, r.replaced = err, false
		}
		switch {
		case r.err == nil && r.replaced:
			// The old credential is refused from now on; the hostname changed.
			s.credentialReplaced(r.req.Site)
			s.forgetReport(r.req.Site)
		case r.err == nil:
			s.enrolled(r.req.Site, r.req.Client, r.credHash, gen)
		}
		close(r.done)
	}
}

// enrollToken is an enroll token as an enrollment batch reads it.
type enrollToken struct {
	id                    int64
	client, site, expires string
	replace               bool
	uses, used            int
	revoked               bool
}

// enrollTx decides and writes a batch of enrollments inside tx, setting
// each one's outcome (nil: enrolled) and whether it replaced the site.
func enrollTx(tx *sql.Tx, s *Store, batch []*enrollReq, outcome []error, replaced []bool) error {
	var hashes, names []string
	seenHash, seenSite := map[string]bool{}, map[string]bool{}
	for _, r := range batch {
		if h := HashSecret(r.token); !seenHash[h] {
			seenHash[h] = true
			hashes = append(hashes, h)
		}
		if !seenSite[r.req.Site] {
			seenSite[r.req.Site] = true
			names = append(names, r.req.Site)
		}
	}
	tokens := map[string]*enrollToken{}
	err := chunks(hashes, func(part []string) error {
		in, args := inList(part)
		rows, err := tx.Query(`SELECT hash, id, client, site, replace_site, expires_at, uses_left, revoked_at FROM enroll_tokens WHERE hash IN (`+in+`)`, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var h string
			var t enrollToken
			var revoked sql.NullString
			if err := rows.Scan(&h, &t.id, &t.client, &t.site, &t.replace, &t.expires, &t.uses, &revoked); err != nil {
				return err
			}
			t.revoked = revoked.Valid
			tokens[h] = &t
		}
		return rows.Err()
	})
	if err != nil {
		return err
	}
	sites, err := ownersIn(names, tx.Query)
	if err != nil {
		return err
	}
	var fresh []*enrollReq
	var audits []timedAudit
	var stale []string
	for i, r := range batch {
		if err := r.ctx.Err(); err != nil {
			outcome[i] = err
			continue
		}
		t := tokens[HashSecret(r.token)]
		if t == nil {
			outcome[i] = ErrEnrollTokenInvalid
			continue
		}
		refuse := func(err error) *EnrollRefusal {
			return &EnrollRefusal{Err: err, TokenClient: t.client, TokenSite: t.site}
		}
		switch {
		case t.revoked:
			outcome[i] = ErrEnrollTokenRevoked
			continue
		case !r.now.Before(parseTime(t.expires)):
			outcome[i] = ErrEnrollTokenExpired
			continue
		case t.uses-t.used <= 0:
			outcome[i] = ErrEnrollTokenUsed
			continue
		case t.client != r.req.Client:
			outcome[i] = refuse(ErrWrongClient)
			continue
		case t.site != "" && t.site != r.req.Site:
			outcome[i] = refuse(ErrWrongSite)
			continue
		}
		action := "site.enroll"
		old, enrolled := sites[r.req.Site]
		switch {
		case !enrolled:
			fresh = append(fresh, r)
		case !t.replace || old.Client != t.client:
			// The same refusal whoever owns the site.
			outcome[i] = refuse(ErrSiteEnrolled)
			continue
		case old.Product != r.req.Product:
			ref := refuse(ErrWrongProduct)
			ref.SiteProduct = old.Product
			outcome[i] = ref
			continue
		default:
			action = "site.reenroll"
			// The site may be one enrolled earlier in this batch: its row
			// first.
			if err := insertEnrolled(tx, fresh); err != nil {
				return err
			}
			fresh = nil
			if _, err := tx.Exec(`UPDATE sites SET credential_hash = ?, hostname = ?, enrolled_at = ? WHERE site = ?`,
				r.credHash, r.req.Hostname, formatTime(r.now), r.req.Site); err != nil {
				return err
			}
			replaced[i] = true
			stale = append(stale, cacheCred+"\t"+r.req.Site)
		}
		sites[r.req.Site] = SiteOwner{Client: r.req.Client, Product: r.req.Product}
		t.used++
		audits = append(audits, timedAudit{at: r.now, Audit: Audit{Actor: fmt.Sprintf("enroll token %d", t.id), Action: action, Object: "site " + r.req.Site,
			Detail: fmt.Sprintf("enroll_token=%d client=%s product=%s hostname=%s", t.id, r.req.Client, r.req.Product, r.req.Hostname)}})
	}
	if err := insertEnrolled(tx, fresh); err != nil {
		return err
	}
	for _, t := range tokens {
		if t.used == 0 {
			continue
		}
		if _, err := tx.Exec(`UPDATE enroll_tokens SET uses_left = uses_left - ? WHERE id = ?`, t.used, t.id); err != nil {
			return err
		}
	}
	if err := s.tellCaches(tx, stale...); err != nil {
		return err
	}
	return insertAudits(tx, audits)
}

// insertEnrolled inserts the rows of new sites, a few hundred a statement.
func insertEnrolled(tx *sql.Tx, fresh []*enrollReq) error {
	const cols = 6
	for i := 0; i < len(fresh); i += inChunk {
		part := fresh[i:min(i+inChunk, len(fresh))]
		args := make([]any, 0, cols*len(part))
		for _, r := range part {
			args = append(args, r.req.Site, r.req.Client, r.req.Product, r.credHash, r.req.Hostname, formatTime(r.now))
		}
		if _, err := tx.Exec(`INSERT INTO sites (site, client, product, credential_hash, hostname, enrolled_at) VALUES `+valuesList(len(part), cols), args...); err != nil {
			return err
		}
	}
	return nil
}

// enrolled caches what a new site's first check-in looks up: its
// credential's site and its client. Thousands of agents enrolled at once
// check in at once, and each of those reads waited for one of the read
// pool's connections behind the others (measured: 6,000 check-ins
// waiting on their credential's read alone). gen is the credentials'
// generation before the enrollment's transaction: a credential replaced
// meanwhile (a re-enrollment racing with this one) is not cached.
func (s *Store) enrolled(site, client, credHash string, gen uint64) {
	s.c.clients.Store(site, client)
	s.c.credMu.Lock()
	defer s.c.credMu.Unlock()
	if s.c.credGen == gen {
		s.c.creds[credHash] = site
		s.c.credOf[site] = credHash
	}
}
