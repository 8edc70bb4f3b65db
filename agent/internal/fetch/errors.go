package fetch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"regexp"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/trustedmetadata"
)

// Kind classifies why the update channel refused or failed. Kinds are
// sentinel errors: errors.Is(err, fetch.ErrExpired) holds for an *Error of
// that kind, and Reason(err) returns the kind as a short string for job
// events.
type Kind string

func (k Kind) Error() string { return string(k) }

// The kinds of failure. The security ones (signature, expiry, rollback,
// version, hash, length) mean the repository or the network served
// something the trusted metadata does not vouch for.
const (
	ErrBadSignature   Kind = "bad_signature"     // metadata lacks a threshold of valid signatures from the trusted keys
	ErrExpired        Kind = "expired"           // metadata expired at the reference time (freeze attack?)
	ErrRollback       Kind = "rollback"          // a version lower than one already trusted (rollback attack?)
	ErrBadVersion     Kind = "bad_version"       // a version other than the one the signing role lists
	ErrHashMismatch   Kind = "hash_mismatch"     // content does not match the trusted hash
	ErrLengthMismatch Kind = "length_mismatch"   // content shorter than, or otherwise not, the trusted length
	ErrLengthExceeded Kind = "length_exceeded"   // the server sent more than the trusted length
	ErrNotFound       Kind = "not_found"         // HTTP 404, or a target the trusted metadata does not list
	ErrHTTP           Kind = "http_error"        // an HTTP status other than 200/206/404
	ErrNetwork        Kind = "network"           // connection refused, reset, timed out or stalled
	ErrBadMetadata    Kind = "bad_metadata"      // metadata malformed or inconsistent in another way
	ErrRootPin        Kind = "root_pin_mismatch" // the initial root does not match root_sha256
	ErrNoRoot         Kind = "no_root"           // no trusted root yet (Init or Bootstrap first)
	ErrCanceled       Kind = "canceled"          // the caller's context ended
	ErrLocal          Kind = "local_io"          // reading or writing local files failed
	ErrConfig         Kind = "config"            // the Config or an argument is not usable
)

// Error is the error this package returns. Its message is one line that
// names the role or the target, then the reason. Err is the cause, often
// one of go-tuf's *metadata.Err... types (errors.As reaches it).
type Error struct {
	Kind   Kind
	Role   string // metadata role: root, timestamp, snapshot, targets or a delegated role
	Target string // target path, for errors about a target file
	Msg    string // what went wrong, without the role or target
	Err    error
	// RootSHA256 is, for ErrRootPin, the sha256 (hex) of the root that
	// the pin refused.
	RootSHA256 string
}

func (e *Error) Error() string {
	s := e.subject()
	if s == "" {
		return e.Msg
	}
	return s + ": " + e.Msg
}

func (e *Error) subject() string {
	switch e.Role {
	case "":
		if e.Target != "" {
			return "target " + e.Target
		}
		return ""
	case metadata.ROOT, metadata.TIMESTAMP, metadata.SNAPSHOT:
		return e.Role
	case metadata.TARGETS:
		return "targets metadata"
	default:
		return "delegated role " + e.Role + " metadata"
	}
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Is reports whether target is e's Kind.
func (e *Error) Is(target error) bool {
	k, ok := target.(Kind)
	return ok && k == e.Kind
}

// Reason classifies err for job events: the Kind of an *Error in its chain
// ("bad_signature", "expired", "rollback", "hash_mismatch",
// "length_exceeded", "not_found", "network", ...), "canceled" for a context
// error, "" for nil and "unknown" otherwise.
func Reason(err error) string {
	if err == nil {
		return ""
	}
	if e, ok := errors.AsType[*Error](err); ok {
		return string(e.Kind)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return string(ErrCanceled)
	}
	return "unknown"
}

// Transient reports whether err may go away by itself, so that trying
// again later makes sense: network trouble and HTTP errors. Refusals for
// security reasons are not transient as far as the client can tell.
func Transient(err error) bool {
	return errors.Is(err, ErrNetwork) || errors.Is(err, ErrHTTP)
}

// oneLine keeps messages on one line, whatever a server or a library put
// in them.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// Patterns of go-tuf v2.4's error messages (metadata/trustedmetadata and
// metadata/metadata.go). go-tuf's error types say what went wrong but not
// for which role, so the role and the versions come from the text. When a
// pattern does not match (another go-tuf version), the role falls back to
// the last metadata file fetched and the message to go-tuf's own.
var (
	reUnsigned      = regexp.MustCompile(`^Verifying (.+) failed, not enough signatures, got (\d+), want (\d+)$`)
	reExpiredFinal  = regexp.MustCompile(`^(?:final )?(root|timestamp|snapshot)\.json is expired$`)
	reExpiredNew    = regexp.MustCompile(`^new (.+) is expired$`)
	reTSRollback    = regexp.MustCompile(`^new (timestamp|snapshot) version (\d+) must be >= (\d+)$`)
	reMetaRollback  = regexp.MustCompile(`^expected (.+)\.json version (\d+), got (\d+)$`) // sic: new, then trusted
	reRoleVersion   = regexp.MustCompile(`^expected (.+) version (\d+), got (\d+)$`)
	reSnapVersion   = regexp.MustCompile(`^expected (\d+), got (\d+)$`)
	reRootVersion   = regexp.MustCompile(`^bad version number, expected (\d+), got (\d+)$`)
	reRoleNotInSnap = regexp.MustCompile(`^role (.+) not found in snapshot$`)
)

// classify turns an error from go-tuf's updater (or from our fetcher under
// it) into an *Error naming the role. last is the last metadata file the
// fetcher was asked for; trusted is the updater's trusted set, used to say
// when expired metadata expired; ref is the reference time.
func classify(ctx context.Context, err error, last fetchRecord, trusted *trustedmetadata.TrustedMetadata, ref time.Time) error {
	if err == nil {
		return nil
	}
	if e, ok := errors.AsType[*Error](err); ok {
		return e
	}
	role := last.role
	mk := func(k Kind, role, msg string) *Error {
		return &Error{Kind: k, Role: role, Msg: oneLine(msg), Err: err}
	}
	if ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return mk(ErrCanceled, role, "canceled: "+ctx.Err().Error())
	}
	if e, ok := errors.AsType[*metadata.ErrDownloadHTTP](err); ok {
		if e.StatusCode == 404 {
			return mk(ErrNotFound, role, fmt.Sprintf("not found at %s (HTTP 404)", e.URL))
		}
		return mk(ErrHTTP, role, fmt.Sprintf("%s answered HTTP %d", e.URL, e.StatusCode))
	}
	if e, ok := errors.AsType[*metadata.ErrDownloadLengthMismatch](err); ok {
		return mk(ErrLengthExceeded, role, e.Msg)
	}
	if e, ok := errors.AsType[*metadata.ErrUnsignedMetadata](err); ok {
		if m := reUnsigned.FindStringSubmatch(e.Msg); m != nil {
			return mk(ErrBadSignature, m[1], fmt.Sprintf("bad signature (%s valid of the %s required)", m[2], m[3]))
		}
		return mk(ErrBadSignature, role, "bad signature ("+e.Msg+")")
	}
	if e, ok := errors.AsType[*metadata.ErrExpiredMetadata](err); ok {
		r := role
		if m := reExpiredFinal.FindStringSubmatch(e.Msg); m != nil {
			r = m[1]
		} else if m := reExpiredNew.FindStringSubmatch(e.Msg); m != nil {
			r = m[1]
		}
		msg := fmt.Sprintf("expired (reference time %s)", ref.UTC().Format(time.RFC3339))
		if exp, ok := expiry(r, last, trusted); ok {
			msg = fmt.Sprintf("expired at %s (reference time %s)", exp.UTC().Format(time.RFC3339), ref.UTC().Format(time.RFC3339))
		}
		return mk(ErrExpired, r, msg)
	}
	if e, ok := errors.AsType[*metadata.ErrBadVersionNumber](err); ok {
		return versionError(err, e.Msg, role)
	}
	if e, ok := errors.AsType[*metadata.ErrEqualVersionNumber](err); ok {
		return mk(ErrBadVersion, role, e.Msg)
	}
	if e, ok := errors.AsType[*metadata.ErrLengthOrHashMismatch](err); ok {
		lister := metadata.SNAPSHOT
		if role == metadata.SNAPSHOT {
			lister = metadata.TIMESTAMP
		}
		k := ErrHashMismatch
		if strings.Contains(e.Msg, "length") {
			k = ErrLengthMismatch
		}
		return mk(k, role, fmt.Sprintf("does not match the length and hashes the %s lists (%s)", lister, e.Msg))
	}
	if e, ok := errors.AsType[*metadata.ErrRepository](err); ok {
		return mk(ErrBadMetadata, role, e.Msg)
	}
	if m := reRoleNotInSnap.FindStringSubmatch(err.Error()); m != nil {
		return mk(ErrBadMetadata, m[1], "not listed in the snapshot")
	}
	if _, ok := errors.AsType[*fs.PathError](err); ok {
		return mk(ErrLocal, role, err.Error())
	}
	if isNetwork(err) {
		return mk(ErrNetwork, role, fmt.Sprintf("download from %s failed: %v", last.url, err))
	}
	// JSON that does not parse, a wrong _type, duplicate signatures...
	return mk(ErrBadMetadata, role, err.Error())
}

// versionError explains one of go-tuf's ErrBadVersionNumber messages.
func versionError(err error, msg, role string) *Error {
	mk := func(k Kind, role, msg string) *Error {
		return &Error{Kind: k, Role: role, Msg: msg, Err: err}
	}
	if m := reTSRollback.FindStringSubmatch(msg); m != nil {
		if m[1] == metadata.SNAPSHOT {
			return mk(ErrRollback, m[1], fmt.Sprintf("version %s (listed by the new timestamp) is lower than the trusted %s (rollback attack?)", m[2], m[3]))
		}
		return mk(ErrRollback, m[1], fmt.Sprintf("version %s is lower than the trusted %s (rollback attack?)", m[2], m[3]))
	}
	if m := reMetaRollback.FindStringSubmatch(msg); m != nil {
		return mk(ErrRollback, m[1], fmt.Sprintf("version %s (listed by the new snapshot) is lower than the trusted %s (rollback attack?)", m[2], m[3]))
	}
	if m := reRoleVersion.FindStringSubmatch(msg); m != nil {
		return mk(ErrBadVersion, m[1], fmt.Sprintf("version %s is not the version %s the snapshot lists", m[3], m[2]))
	}
	if m := reSnapVersion.FindStringSubmatch(msg); m != nil {
		return mk(ErrBadVersion, metadata.SNAPSHOT, fmt.Sprintf("version %s is not the version %s the timestamp lists", m[2], m[1]))
	}
	if m := reRootVersion.FindStringSubmatch(msg); m != nil {
		return mk(ErrBadVersion, metadata.ROOT, fmt.Sprintf("version %s served where version %s was expected", m[2], m[1]))
	}
	return mk(ErrBadVersion, role, oneLine(msg))
}

// expiry finds when role's metadata expired: in the trusted set, where
// go-tuf keeps an expired timestamp or snapshot for rollback checks, or
// else in the bytes just fetched.
func expiry(role string, last fetchRecord, trusted *trustedmetadata.TrustedMetadata) (time.Time, bool) {
	if trusted != nil {
		switch role {
		case metadata.ROOT:
			if trusted.Root != nil {
				return trusted.Root.Signed.Expires, true
			}
		case metadata.TIMESTAMP:
			if trusted.Timestamp != nil {
				return trusted.Timestamp.Signed.Expires, true
			}
		case metadata.SNAPSHOT:
			if trusted.Snapshot != nil {
				return trusted.Snapshot.Signed.Expires, true
			}
		}
	}
	if last.role == role && len(last.body) > 0 {
		var probe struct {
			Signed struct {
				Expires time.Time `json:"expires"`
			} `json:"signed"`
		}
		if json.Unmarshal(last.body, &probe) == nil && !probe.Signed.Expires.IsZero() {
			return probe.Signed.Expires, true
		}
	}
	return time.Time{}, false
}

// isNetwork reports whether err came from the network rather than from
// what was sent over it.
func isNetwork(err error) bool {
	if _, ok := errors.AsType[net.Error](err); ok {
		return true
	}
	return errors.Is(err, errStalled) || errors.Is(err, errShortBody) ||
		strings.Contains(err.Error(), "unexpected EOF") || strings.Contains(err.Error(), "connection reset")
}

// statusRetryable reports whether an HTTP status is worth another try.
func statusRetryable(code int) bool {
	return code == 408 || code == 429 || code >= 500
}
