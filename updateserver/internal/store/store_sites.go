package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
)

// EnrollToken is a one-time or few-times token a site's agent exchanges
// for its own credential.
type EnrollToken struct {
	ID        int64
	Client    string
	ExpiresAt time.Time
	UsesLeft  int
}

// CreateEnrollToken stores an enroll token for client.
func (s *Store) CreateEnrollToken(ctx context.Context, now time.Time, secret, client string, expires time.Time, uses int, by string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.Exec(`INSERT INTO enroll_tokens (hash, client, expires_at, uses_left, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?)`,
			HashSecret(secret), client, formatTime(expires), uses, formatTime(now), by)
		if err != nil {
			return err
		}
		id, _ := res.LastInsertId()
		return insertAudit(ctx, tx, now, Audit{Actor: by, Action: "enroll_token.create", Object: fmt.Sprintf("enroll token %d", id),
			Detail: fmt.Sprintf("client=%s uses=%d expires=%s", client, uses, formatTime(expires))})
	})
}

// Enrollment errors, each a reason the agent is refused.
var (
	ErrEnrollTokenInvalid = errors.New("the enroll token is not valid")
	ErrEnrollTokenExpired = errors.New("the enroll token has expired")
	ErrEnrollTokenUsed    = errors.New("the enroll token has been used up")
	ErrWrongClient        = errors.New("the enroll token is for another client")
)

// Enroll consumes one use of the enroll token and registers the site (or,
// for a site of the same client enrolling again, replaces its credential),
// storing only the credential's hash.
func (s *Store) Enroll(ctx context.Context, now time.Time, token string, req protocol.EnrollRequest, credential string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		var id int64
		var client, expires string
		var uses int
		err := tx.QueryRow(`SELECT id, client, expires_at, uses_left FROM enroll_tokens WHERE hash = ?`, HashSecret(token)).
			Scan(&id, &client, &expires, &uses)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return ErrEnrollTokenInvalid
		case err != nil:
			return err
		case !now.Before(parseTime(expires)):
			return ErrEnrollTokenExpired
		case uses <= 0:
			return ErrEnrollTokenUsed
		case client != req.Client:
			return fmt.Errorf("%w (%s, not %s)", ErrWrongClient, client, req.Client)
		}
		if _, err := tx.Exec(`UPDATE enroll_tokens SET uses_left = uses_left - 1 WHERE id = ?`, id); err != nil {
			return err
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
		case oldClient != req.Client || oldProduct != req.Product:
			return fmt.Errorf("site %s is already enrolled for client %s, product %s: %w", req.Site, oldClient, oldProduct, ErrConflict)
		default:
			action = "site.reenroll"
			_, err = tx.Exec(`UPDATE sites SET credential_hash = ?, hostname = ?, enrolled_at = ? WHERE site = ?`,
				HashSecret(credential), req.Hostname, formatTime(now), req.Site)
		}
		if err != nil {
			return err
		}
		return insertAudit(ctx, tx, now, Audit{Actor: fmt.Sprintf("enroll token %d", id), Action: action, Object: "site " + req.Site,
			Detail: fmt.Sprintf("client=%s product=%s hostname=%s", req.Client, req.Product, req.Hostname)})
	})
}

// SiteByCredential finds the site whose agent holds credential.
func (s *Store) SiteByCredential(ctx context.Context, credential string) (string, error) {
	var site string
	err := s.db.QueryRowContext(ctx, `SELECT site FROM sites WHERE credential_hash = ?`, HashSecret(credential)).Scan(&site)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	}
	return site, err
}

// Checkin records what an agent reported.
func (s *Store) Checkin(ctx context.Context, now time.Time, site string, c protocol.CheckinRequest) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.Exec(`UPDATE sites SET installed_version = ?, state = ?, agent_version = ?, os = ?, arch = ?, hostname = ?, last_seen = ?, drift = ?
		WHERE site = ?`, c.InstalledVersion, c.State, c.AgentVersion, c.OS, c.Arch, c.Hostname, formatTime(now), strings.Join(c.Drift, "\n"), site)
		return err
	})
}

const siteColumns = `site, client, product, installed_version, target_version, state, agent_version, os, arch, hostname, last_seen, enrolled_at, drift`

func scanSite(r scanner) (protocol.Site, error) {
	var st protocol.Site
	var lastSeen sql.NullString
	var enrolled, drift string
	err := r.Scan(&st.Site, &st.Client, &st.Product, &st.InstalledVersion, &st.TargetVersion, &st.State,
		&st.AgentVersion, &st.OS, &st.Arch, &st.Hostname, &lastSeen, &enrolled, &drift)
	if drift != "" {
		st.Drift = strings.Split(drift, "\n")
	}
	st.LastSeen = nullTime(lastSeen)
	st.EnrolledAt = parseTime(enrolled)
	return st, err
}

// SiteFilter selects sites; empty fields match all.
type SiteFilter struct{ Client, Product string }

// ListSites returns matching sites ordered by client and site.
func (s *Store) ListSites(ctx context.Context, f SiteFilter) ([]protocol.Site, error) {
	q := `SELECT ` + siteColumns + ` FROM sites WHERE 1=1`
	var args []any
	if f.Client != "" {
		q += ` AND client = ?`
		args = append(args, f.Client)
	}
	if f.Product != "" {
		q += ` AND product = ?`
		args = append(args, f.Product)
	}
	rows, err := s.db.QueryContext(ctx, q+` ORDER BY client, site`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []protocol.Site{}
	for rows.Next() {
		st, err := scanSite(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, rows.Err()
}

// GetSite returns one site.
func (s *Store) GetSite(ctx context.Context, site string) (protocol.Site, error) {
	st, err := scanSite(s.db.QueryRowContext(ctx, `SELECT `+siteColumns+` FROM sites WHERE site = ?`, site))
	if errors.Is(err, sql.ErrNoRows) {
		return st, ErrNotFound
	}
	return st, err
}
