package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
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
func (s *Store) Enroll(ctx context.Context, now time.Time, token string, req protocol.EnrollRequest, credential string) (replaced bool, err error) {
	s.c.credMu.RLock()
	gen := s.c.credGen
	s.c.credMu.RUnlock()
	err = s.tx(ctx, func(tx *sql.Tx) error {
		replaced = false
		var id int64
		var client, site, expires string
		var replace bool
		var uses int
		var revoked sql.NullString
		err := tx.QueryRow(`SELECT id, client, site, replace_site, expires_at, uses_left, revoked_at FROM enroll_tokens WHERE hash = ?`, HashSecret(token)).
			Scan(&id, &client, &site, &replace, &expires, &uses, &revoked)
		refuse := func(err error) *EnrollRefusal { return &EnrollRefusal{Err: err, TokenClient: client, TokenSite: site} }
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return ErrEnrollTokenInvalid
		case err != nil:
			return err
		case revoked.Valid:
			return ErrEnrollTokenRevoked
		case !now.Before(parseTime(expires)):
			return ErrEnrollTokenExpired
		case uses <= 0:
			return ErrEnrollTokenUsed
		case client != req.Client:
			return refuse(ErrWrongClient)
		case site != "" && site != req.Site:
			return refuse(ErrWrongSite)
		}
		var oldClient, oldProduct string
		err = tx.QueryRow(`SELECT client, product FROM sites WHERE site = ?`, req.Site).Scan(&oldClient, &oldProduct)
		action := "site.enroll"
		switch {
		case errors.Is(err, sql.ErrNoRows):
			_, err = tx.Exec(`INSERT INTO sites (site, client, product, credential_hash, hostname, enrolled_at) VALUES (?, ?, ?, ?, ?, ?)`,
				req.Site, req.Client, req.Product, HashSecret(credential), req.Hostname, formatTime(now))
		case err != nil:
			return err
		case !replace || oldClient != client:
			// The same refusal whoever owns the site.
			return refuse(ErrSiteEnrolled)
		case oldProduct != req.Product:
			r := refuse(ErrWrongProduct)
			r.SiteProduct = oldProduct
			return r
		default:
			action = "site.reenroll"
			_, err = tx.Exec(`UPDATE sites SET credential_hash = ?, hostname = ?, enrolled_at = ? WHERE site = ?`,
				HashSecret(credential), req.Hostname, formatTime(now), req.Site)
		}
		if err != nil {
			return err
		}
		if _, err := tx.Exec(`UPDATE enroll_tokens SET uses_left = uses_left - 1 WHERE id = ?`, id); err != nil {
			return err
		}
		replaced = action == "site.reenroll"
		if replaced {
			if err := s.tellCaches(tx, cacheCred+"\t"+req.Site); err != nil {
				return err
			}
		}
		return insertAudit(ctx, tx, now, Audit{Actor: fmt.Sprintf("enroll token %d", id), Action: action, Object: "site " + req.Site,
			Detail: fmt.Sprintf("enroll_token=%d client=%s product=%s hostname=%s", id, req.Client, req.Product, req.Hostname)})
	})
	if replaced {
		// The old credential is refused from now on; the hostname changed.
		s.credentialReplaced(req.Site)
		s.forgetReport(req.Site)
	}
	if err == nil && !replaced {
		s.enrolled(req.Site, req.Client, HashSecret(credential), gen)
	}
	return replaced, err
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
