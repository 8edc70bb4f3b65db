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
	"time"
)

// Token is an operator credential as stored: never the secret, only its hash.
type Token struct {
	ID   int64
	Name string
	Role string
}

// Actor is how the audit log names the token's holder.
func (t Token) Actor() string { return fmt.Sprintf("%s (token %d, %s)", t.Name, t.ID, t.Role) }

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

// CreateToken stores a new token for secret and audits it.
func (s *Store) CreateToken(ctx context.Context, now time.Time, name, role, secret, by string) (Token, error) {
	t := Token{Name: name, Role: role}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.Exec(
			`INSERT INTO tokens (name, role, hash, created_at, created_by) VALUES (?, ?, ?, ?, ?)`,
			name, role, HashSecret(secret), formatTime(now), by)
		if err != nil {
			return err
		}
		if t.ID, err = res.LastInsertId(); err != nil {
			return err
		}
		return insertAudit(ctx, tx, now, Audit{Actor: by, Action: "token.create", Object: fmt.Sprintf("token %d", t.ID), Detail: fmt.Sprintf("name=%s role=%s", name, role)})
	})
	if err != nil {
		return Token{}, fmt.Errorf("create token: %w", err)
	}
	return t, nil
}

// TokenBySecret finds the live token whose secret is secret.
func (s *Store) TokenBySecret(ctx context.Context, secret string) (Token, error) {
	var t Token
	err := s.db.QueryRowContext(ctx,
		`SELECT id, name, role FROM tokens WHERE hash = ? AND revoked_at IS NULL`, HashSecret(secret)).
		Scan(&t.ID, &t.Name, &t.Role)
	if errors.Is(err, sql.ErrNoRows) {
		return Token{}, ErrNotFound
	}
	return t, err
}

// CountTokens returns how many tokens exist, revoked or not.
func (s *Store) CountTokens(ctx context.Context) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM tokens`).Scan(&n)
	return n, err
}
