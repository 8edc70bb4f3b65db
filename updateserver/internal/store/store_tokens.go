package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
)

// Token is an operator credential as stored: never the secret, only its hash.
type Token struct {
	ID        int64
	Name      string
	Role      string
	ExpiresAt *time.Time // nil: never expires
}

// Actor is how the audit log names the token's holder.
func (t Token) Actor() string { return fmt.Sprintf("%s (token %d, %s)", t.Name, t.ID, t.Role) }

// actorSuffix is what Token.Actor appends to the token's name.
var actorSuffix = regexp.MustCompile(` \(token ([0-9]+), ([a-z]+)\)$`)

// ParseActor splits an actor that Token.Actor made into the token's name
// and ID; ok is false for any other actor (the server itself, an enroll
// token). It reads the suffix from the end, so a name that itself looks
// like an actor is still split where Token.Actor joined it.
func ParseActor(actor string) (name string, id int64, ok bool) {
	m := actorSuffix.FindStringSubmatchIndex(actor)
	if m == nil || m[0] == 0 || !protocol.ValidRole(actor[m[4]:m[5]]) {
		return "", 0, false
	}
	id, err := strconv.ParseInt(actor[m[2]:m[3]], 10, 64)
	if err != nil || id <= 0 {
		return "", 0, false
	}
	return actor[:m[0]], id, true
}

// Token errors. Both wrap ErrNotFound, so a caller that only asks "is
// there a usable token?" treats them as no token at all.
var (
	ErrTokenRevoked = fmt.Errorf("the token was revoked: %w", ErrNotFound)
	ErrTokenExpired = fmt.Errorf("the token has expired: %w", ErrNotFound)
	// ErrTokenNameTaken: a live token already has the name.
	ErrTokenNameTaken = fmt.Errorf("a live token has that name: %w", ErrConflict)
	// ErrLastAdmin: the revocation would leave no live admin token.
	ErrLastAdmin = fmt.Errorf("that would revoke the last live admin token: %w", ErrConflict)
)

// NewSecret returns a fresh random token with the given prefix.
func NewSecret(prefix string) string {
	b := make([]byte, 32)
	rand.Read(b)
	return prefix + base64.RawURLEncoding.EncodeToString(b)
}

// HashSecret is what the store keeps of a token.
func HashSecret(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// NewToken is an operator token to store.
type NewToken struct {
	Name, Role, Secret string
	ExpiresAt          *time.Time // nil: never expires
	By                 string     // the actor who creates it
}

// CreateToken stores a new token that never expires for secret and audits it.
func (s *Store) CreateToken(ctx context.Context, now time.Time, name, role, secret, by string) (Token, error) {
	return s.AddToken(ctx, now, NewToken{Name: name, Role: role, Secret: secret, By: by})
}

// AddToken stores a new token and audits it. Its name must not be that of
// another live (neither revoked nor expired) token: ErrTokenNameTaken.
func (s *Store) AddToken(ctx context.Context, now time.Time, nt NewToken) (Token, error) {
	t := Token{Name: nt.Name, Role: nt.Role, ExpiresAt: nt.ExpiresAt}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		live, err := liveTokensNamed(tx, nt.Name, now)
		if err != nil {
			return err
		}
		if live > 0 {
			return ErrTokenNameTaken
		}
		var exp any
		detail := fmt.Sprintf("name=%s role=%s expires=never", nt.Name, nt.Role)
		if nt.ExpiresAt != nil {
			exp = formatTime(*nt.ExpiresAt)
			detail = fmt.Sprintf("name=%s role=%s expires=%s", nt.Name, nt.Role, formatTime(*nt.ExpiresAt))
		}
		err = tx.QueryRow(
			`INSERT INTO tokens (name, role, hash, created_at, created_by, expires_at) VALUES (?, ?, ?, ?, ?, ?) RETURNING id`,
			nt.Name, nt.Role, HashSecret(nt.Secret), formatTime(now), nt.By, exp).Scan(&t.ID)
		if err != nil {
			return err
		}
		return insertAudit(ctx, tx, now, Audit{Actor: nt.By, Action: "token.create", Object: fmt.Sprintf("token %d", t.ID), Detail: detail})
	})
	if err != nil {
		return Token{}, fmt.Errorf("create token: %w", err)
	}
	return t, nil
}

// liveTokensNamed counts the tokens named name that are neither revoked
// nor expired. Times are compared in Go: RFC 3339 with trimmed fractions
// does not sort as text.
func liveTokensNamed(tx *sql.Tx, name string, now time.Time) (int, error) {
	rows, err := tx.Query(`SELECT expires_at FROM tokens WHERE name = ? AND revoked_at IS NULL`, name)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var exp sql.NullString
		if err := rows.Scan(&exp); err != nil {
			return 0, err
		}
		if !exp.Valid || now.Before(parseTime(exp.String)) {
			n++
		}
	}
	return n, rows.Err()
}

// Authenticate finds the token whose secret is secret: ErrNotFound when
// there is none, ErrTokenRevoked or ErrTokenExpired (with the token) when
// it exists but may no longer be used.
func (s *Store) Authenticate(ctx context.Context, secret string, now time.Time) (Token, error) {
	return s.liveToken(ctx, `hash = ?`, HashSecret(secret), now)
}

// TokenByID finds the token with the given ID, with the same errors as
// Authenticate: the dashboard checks its session's token on every request
// (a revoked or expired token ends the session).
func (s *Store) TokenByID(ctx context.Context, id int64, now time.Time) (Token, error) {
	return s.liveToken(ctx, `id = ?`, id, now)
}

// liveToken finds the token that where (one column = ?) selects, and says
// whether it may still be used.
func (s *Store) liveToken(ctx context.Context, where string, arg any, now time.Time) (Token, error) {
	var t Token
	var exp, revoked sql.NullString
	err := s.queryRow(ctx,
		`SELECT id, name, role, expires_at, revoked_at FROM tokens WHERE `+where, arg).
		Scan(&t.ID, &t.Name, &t.Role, &exp, &revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return Token{}, ErrNotFound
	}
	if err != nil {
		return Token{}, err
	}
	t.ExpiresAt = nullTime(exp)
	switch {
	case revoked.Valid:
		return t, ErrTokenRevoked
	case t.ExpiresAt != nil && !now.Before(*t.ExpiresAt):
		return t, ErrTokenExpired
	}
	return t, nil
}

// TokenBySecret finds the live token whose secret is secret; a revoked or
// expired one is ErrNotFound too.
func (s *Store) TokenBySecret(ctx context.Context, secret string) (Token, error) {
	t, err := s.Authenticate(ctx, secret, time.Now())
	if err != nil {
		return Token{}, err
	}
	return t, nil
}

// CountTokens returns how many tokens exist, revoked or not.
func (s *Store) CountTokens(ctx context.Context) (int, error) {
	var n int
	err := s.queryRow(ctx, `SELECT count(*) FROM tokens`).Scan(&n)
	return n, err
}

// tokenUseInterval is how stale a token's last use may be: a busy token
// costs one write per interval, not one per request.
const tokenUseInterval = time.Minute

// TokenUsed records that token id was used at now, writing at most once per
// tokenUseInterval per token (remembered in memory, so a restart may write
// once more).
func (s *Store) TokenUsed(ctx context.Context, id int64, now time.Time) error {
	s.usedMu.Lock()
	if last, ok := s.usedAt[id]; ok && now.Sub(last) < tokenUseInterval && !now.Before(last) {
		s.usedMu.Unlock()
		return nil
	}
	if s.usedAt == nil {
		s.usedAt = map[int64]time.Time{}
	}
	s.usedAt[id] = now
	s.usedMu.Unlock()
	err := s.tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.Exec(`UPDATE tokens SET last_used_at = ? WHERE id = ?`, formatTime(now), id)
		return err
	})
	if err != nil {
		s.usedMu.Lock()
		if s.usedAt[id].Equal(now) {
			delete(s.usedAt, id) // the next request tries again
		}
		s.usedMu.Unlock()
		return fmt.Errorf("record use of token %d: %w", id, err)
	}
	return nil
}

// ListTokens returns every token, revoked ones too, oldest first.
func (s *Store) ListTokens(ctx context.Context) ([]protocol.TokenInfo, error) {
	rows, err := s.query(ctx,
		`SELECT id, name, role, created_at, created_by, last_used_at, expires_at, revoked_at, revoked_by FROM tokens ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []protocol.TokenInfo{}
	for rows.Next() {
		var t protocol.TokenInfo
		var created string
		var used, exp, revoked sql.NullString
		if err := rows.Scan(&t.ID, &t.Name, &t.Role, &created, &t.CreatedBy, &used, &exp, &revoked, &t.RevokedBy); err != nil {
			return nil, err
		}
		t.CreatedAt = parseTime(created)
		t.LastUsedAt, t.ExpiresAt, t.RevokedAt = nullTime(used), nullTime(exp), nullTime(revoked)
		out = append(out, t)
	}
	return out, rows.Err()
}

// RevokeToken revokes every token named name that is not revoked yet
// (expired ones too) and audits each; it returns how many. ErrNotFound when
// there is none; ErrLastAdmin when no live admin token would remain.
func (s *Store) RevokeToken(ctx context.Context, now time.Time, name, by string) (int, error) {
	n := 0
	err := s.tx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.Query(`SELECT id, name, role, expires_at FROM tokens WHERE revoked_at IS NULL`)
		if err != nil {
			return err
		}
		type row struct {
			id   int64
			role string
		}
		var revoke []row
		adminsLeft, adminsRevoked := 0, 0
		for rows.Next() {
			var r row
			var tname string
			var exp sql.NullString
			if err := rows.Scan(&r.id, &tname, &r.role, &exp); err != nil {
				rows.Close()
				return err
			}
			liveAdmin := r.role == protocol.RoleAdmin && !(exp.Valid && !now.Before(parseTime(exp.String)))
			switch {
			case tname == name:
				revoke = append(revoke, r)
				if liveAdmin {
					adminsRevoked++
				}
			case liveAdmin:
				adminsLeft++
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if len(revoke) == 0 {
			return ErrNotFound
		}
		if adminsRevoked > 0 && adminsLeft == 0 {
			return ErrLastAdmin
		}
		for _, r := range revoke {
			if _, err := tx.Exec(`UPDATE tokens SET revoked_at = ?, revoked_by = ? WHERE id = ?`, formatTime(now), by, r.id); err != nil {
				return err
			}
			if err := insertAudit(ctx, tx, now, Audit{Actor: by, Action: "token.revoke", Object: fmt.Sprintf("token %d", r.id),
				Detail: fmt.Sprintf("name=%s role=%s", name, r.role)}); err != nil {
				return err
			}
		}
		n = len(revoke)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("revoke token %s: %w", name, err)
	}
	return n, nil
}
