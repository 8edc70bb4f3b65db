// Package protocol holds the JSON wire types of the server's HTTP API under
// /api/v1: the operator API (releases, tokens) and the agent API, and the
// custom metadata the server puts on every TUF target. Both the server and
// its clients (the operator CLI, the agent) import it; it depends on nothing
// of ours.
//
// Compatibility rules: fields are only added, never renamed or removed;
// decoders ignore unknown fields.
package protocol

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// APIVersion is the path prefix of every API endpoint.
const APIVersion = "/api/v1"

// Error codes carried in ErrorBody.Code.
const (
	CodeBadRequest   = "bad_request"
	CodeUnauthorized = "unauthorized"
	CodeForbidden    = "forbidden"
	CodeNotFound     = "not_found"
	CodeConflict     = "conflict"
	CodeTooLarge     = "too_large"
	// CodeTooManyRequests comes with a Retry-After header (seconds).
	CodeTooManyRequests = "too_many_requests"
	CodeInternal        = "internal"
	CodeUnavailable     = "unavailable"
)

// ErrorResponse is the body of every non-2xx API answer:
// {"error":{"code":"...","message":"..."}}.
type ErrorResponse struct {
	Error ErrorBody `json:"error"`
}

// ErrorBody is one API error. Message is one sentence safe to show a user.
type ErrorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Roles of operator tokens, from most to least powerful.
const (
	RoleAdmin   = "admin"
	RoleRelease = "release"
	RoleSupport = "support"
	RoleViewer  = "viewer"
)

// ValidRole reports whether r names an operator role.
func ValidRole(r string) bool {
	switch r {
	case RoleAdmin, RoleRelease, RoleSupport, RoleViewer:
		return true
	}
	return false
}

// CreateTokenRequest is the body of POST /api/v1/tokens.
type CreateTokenRequest struct {
	Role string `json:"role"`
	Name string `json:"name"`
	// ExpiresIn is a Go duration after which the token is refused; empty:
	// it never expires.
	ExpiresIn string `json:"expires_in,omitempty"`
}

// CreateTokenResponse carries the new token; the server keeps only its hash.
type CreateTokenResponse struct {
	Token     string     `json:"token"`
	Role      string     `json:"role"`
	Name      string     `json:"name"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// TokenInfo is an operator token as GET /api/v1/tokens lists it: never the
// secret nor its hash. LastUsedAt may be up to a minute stale.
type TokenInfo struct {
	ID         int64      `json:"id"`
	Name       string     `json:"name"`
	Role       string     `json:"role"`
	CreatedAt  time.Time  `json:"created_at"`
	CreatedBy  string     `json:"created_by"`
	LastUsedAt *time.Time `json:"last_used_at"`
	ExpiresAt  *time.Time `json:"expires_at"`
	RevokedAt  *time.Time `json:"revoked_at"`
	RevokedBy  string     `json:"revoked_by,omitempty"`
}

// RevokeTokenResponse is the answer to POST /api/v1/tokens/{name}/revoke:
// how many live tokens of that name were revoked (more than one only where
// a name was given twice before names were unique).
type RevokeTokenResponse struct {
	Name    string `json:"name"`
	Revoked int    `json:"revoked"`
}

// Upload is the answer to POST /api/v1/uploads: the bundle as the server
// received and validated it, staged until a release is published from it.
type Upload struct {
	ID     string `json:"upload_id"`
	SHA256 string `json:"sha256"`
	Length int64  `json:"length"`
	// Manifest fields read from the bundle's bundle.toml (empty if absent).
	Product     string `json:"product,omitempty"`
	Version     string `json:"version,omitempty"`
	UpgradeFrom string `json:"upgrade_from,omitempty"`
	Notes       string `json:"notes,omitempty"`
}

// PublishRequest is the body of POST /api/v1/releases. Fields given here win
// over the bundle's manifest.
type PublishRequest struct {
	UploadID    string   `json:"upload_id"`
	Product     string   `json:"product,omitempty"`
	Version     string   `json:"version,omitempty"`
	UpgradeFrom string   `json:"upgrade_from,omitempty"`
	Notes       string   `json:"notes,omitempty"`
	Channels    []string `json:"channels,omitempty"`
	// TargetsMetadata, when set, is the new targets metadata signed by the
	// release team's offline targets key. The server verifies it against
	// the root and publishes it unchanged. When empty the server signs with
	// its own targets key, if it holds one.
	TargetsMetadata json.RawMessage `json:"targets_metadata,omitempty"`
}

// Release is one published version of a product.
type Release struct {
	Product     string     `json:"product"`
	Version     string     `json:"version"`
	Channels    []string   `json:"channels"`
	Target      string     `json:"target"`
	SHA256      string     `json:"sha256"`
	Length      int64      `json:"length"`
	UpgradeFrom string     `json:"upgrade_from"`
	Notes       string     `json:"notes"`
	Yanked      bool       `json:"yanked"`
	YankReason  string     `json:"yank_reason,omitempty"`
	YankedAt    *time.Time `json:"yanked_at,omitempty"`
	PublishedAt time.Time  `json:"published_at"`
	PublishedBy string     `json:"published_by"`
	// Deltas are the deltas published next to the full bundle, one per
	// earlier release of the same line (release show).
	Deltas []Delta `json:"deltas,omitempty"`
}

// PromoteRequest is the body of POST /api/v1/releases/{product}/{version}/promote.
type PromoteRequest struct {
	Channel string `json:"channel"`
}

// YankRequest is the body of POST /api/v1/releases/{product}/{version}/yank.
type YankRequest struct {
	Reason string `json:"reason"`
}

// RepoTargets is the answer to GET /api/v1/repo/targets: the current signed
// targets metadata, which an offline signer extends by one target.
type RepoTargets struct {
	Targets json.RawMessage `json:"targets"`
}

// AuditEntry is one line of the audit log, as GET /api/v1/audit lists it.
type AuditEntry struct {
	ID    int64     `json:"id"`
	At    time.Time `json:"at"`
	Actor string    `json:"actor"` // e.g. "alice (token 3, support)", "updateserver", "enroll token 7"
	// ActorName is what the actor filter matches: an operator token's
	// name, or the whole actor of anything else.
	ActorName string `json:"actor_name"`
	TokenID   int64  `json:"token_id,omitempty"` // the operator token it came from; 0: none
	Action    string `json:"action"`
	Object    string `json:"object"`
	Detail    string `json:"detail"`
}

// Audit log paging: GET /api/v1/audit answers at most AuditLimitDefault
// entries unless its limit asks for more, up to AuditLimitMax.
const (
	AuditLimitDefault = 100
	AuditLimitMax     = 1000
)

// ParseSince reads the since of an audit query: a duration back from now
// ("24h", "90m", or whole days such as "7d") or an RFC 3339 time.
func ParseSince(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(s)
	if days, ok := strings.CutSuffix(s, "d"); ok && err != nil {
		if n, aerr := strconv.Atoi(days); aerr == nil && n > 0 && n <= 100*366 {
			d, err = time.Duration(n)*24*time.Hour, nil
		}
	}
	if err != nil || d <= 0 {
		return time.Time{}, fmt.Errorf("%q is neither a positive duration (24h, 90m, 7d) nor an RFC 3339 time (2025-06-01T00:00:00Z)", s)
	}
	return now.Add(-d), nil
}

// TargetCustom is the custom metadata of a bundle's TUF target. It is signed
// with the targets key, so an agent may trust it once go-tuf verified it.
type TargetCustom struct {
	Product     string `json:"product"`
	Version     string `json:"version"`
	UpgradeFrom string `json:"upgrade_from,omitempty"`
}

// maxCustomSize bounds the custom metadata an agent will decode.
const maxCustomSize = 4096

// ParseTargetCustom decodes a target's custom metadata defensively.
func ParseTargetCustom(raw []byte) (TargetCustom, error) {
	var c TargetCustom
	if len(raw) == 0 {
		return c, errors.New("target has no custom metadata: it is not a bundle published by an update server")
	}
	if len(raw) > maxCustomSize {
		return c, fmt.Errorf("target custom metadata is %d bytes, more than the %d allowed", len(raw), maxCustomSize)
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return c, fmt.Errorf("target custom metadata is not valid: %w", err)
	}
	if c.Product == "" || c.Version == "" {
		return c, errors.New("target custom metadata lacks product or version")
	}
	return c, nil
}

// TargetPath is the TUF target path of a product's bundle.
func TargetPath(product, version string) string {
	return product + "/" + product + "-" + version + ".tar.gz"
}

// CreateWebhookRequest is the body of POST /api/v1/webhooks.
type CreateWebhookRequest struct {
	URL string `json:"url"`
	// Events are event types or patterns ending in ".*" (job.*); empty
	// means every event.
	Events []string `json:"events,omitempty"`
	// Secret is whsec_ followed by base64 of 24 to 64 bytes; empty: the
	// server makes one.
	Secret string `json:"secret,omitempty"`
}

// CreateWebhookResponse is the answer to POST /api/v1/webhooks: the
// webhook and its signing secret, shown this once.
type CreateWebhookResponse struct {
	Webhook
	Secret string `json:"secret"`
}

// Webhook is an endpoint events are POSTed to (never with its secret).
type Webhook struct {
	ID        int64     `json:"id"`
	URL       string    `json:"url"`
	Events    []string  `json:"events"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by"`
	// Disabled is set when the receiver answered 410 Gone: nothing is
	// sent to it any more.
	DisabledAt *time.Time `json:"disabled_at"`
	// LastStatus is the last delivery attempt's outcome ("200", "503",
	// or the network error); empty before the first.
	LastStatus    string     `json:"last_status"`
	LastAttemptAt *time.Time `json:"last_attempt_at"`
	// Failures counts failed attempts since the last success.
	Failures int64 `json:"failures"`
	// Pending counts the events waiting to be delivered.
	Pending int64 `json:"pending"`
}
