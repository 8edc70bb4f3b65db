package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/trustedmetadata"
)

// TestClassify feeds classify the errors go-tuf v2.4's updater returns
// (their messages copied from trustedmetadata.go and metadata.go), so that
// a go-tuf upgrade that rewords them shows up here.
func TestClassify(t *testing.T) {
	ref := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	tsExp := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	ts := metadata.Timestamp(tsExp)
	trusted := &trustedmetadata.TrustedMetadata{Root: metadata.Root(ref.Add(time.Hour)), Timestamp: ts}
	lastTS := fetchRecord{role: "timestamp", url: "http://h/m/timestamp.json"}
	lastSnap := fetchRecord{role: "snapshot", url: "http://h/m/4.snapshot.json"}
	lastTargets := fetchRecord{role: "targets", url: "http://h/m/3.targets.json",
		body: []byte(`{"signed":{"_type":"targets","expires":"2029-05-06T07:08:09Z"}}`)}

	tests := []struct {
		name     string
		err      error
		last     fetchRecord
		wantKind Kind
		wantMsg  string
		wantAs   any // a pointer to a go-tuf error type errors.As must find
	}{
		{"unsigned targets", &metadata.ErrUnsignedMetadata{Msg: "Verifying targets failed, not enough signatures, got 0, want 1"}, lastTargets,
			ErrBadSignature, "targets metadata: bad signature (0 valid of the 1 required)", new(*metadata.ErrUnsignedMetadata)},
		{"unsigned delegated", &metadata.ErrUnsignedMetadata{Msg: "Verifying acme failed, not enough signatures, got 1, want 2"}, lastTargets,
			ErrBadSignature, "delegated role acme metadata: bad signature (1 valid of the 2 required)", nil},
		{"expired timestamp, last fetch snapshot", &metadata.ErrExpiredMetadata{Msg: "timestamp.json is expired"}, lastSnap,
			ErrExpired, "timestamp: expired at 2030-01-01T00:00:00Z (reference time 2030-01-02T03:04:05Z)", new(*metadata.ErrExpiredMetadata)},
		{"expired final root", &metadata.ErrExpiredMetadata{Msg: "final root.json is expired"}, lastTS,
			ErrExpired, "root: expired at 2030-01-02T04:04:05Z", nil},
		{"expired targets", &metadata.ErrExpiredMetadata{Msg: "new targets is expired"}, lastTargets,
			ErrExpired, "targets metadata: expired at 2029-05-06T07:08:09Z", nil},
		{"timestamp rollback", &metadata.ErrBadVersionNumber{Msg: "new timestamp version 3 must be >= 5"}, lastTS,
			ErrRollback, "timestamp: version 3 is lower than the trusted 5 (rollback attack?)", new(*metadata.ErrBadVersionNumber)},
		{"snapshot rollback in timestamp", &metadata.ErrBadVersionNumber{Msg: "new snapshot version 3 must be >= 5"}, lastTS,
			ErrRollback, "snapshot: version 3 (listed by the new timestamp) is lower than the trusted 5 (rollback attack?)", nil},
		{"targets rollback in snapshot", &metadata.ErrBadVersionNumber{Msg: "expected targets.json version 2, got 4"}, lastSnap,
			ErrRollback, "targets metadata: version 2 (listed by the new snapshot) is lower than the trusted 4 (rollback attack?)", nil},
		{"targets version not the listed one", &metadata.ErrBadVersionNumber{Msg: "expected targets version 4, got 3"}, lastTargets,
			ErrBadVersion, "targets metadata: version 3 is not the version 4 the snapshot lists", nil},
		{"snapshot version not the listed one", &metadata.ErrBadVersionNumber{Msg: "expected 4, got 3"}, lastSnap,
			ErrBadVersion, "snapshot: version 3 is not the version 4 the timestamp lists", nil},
		{"root version skipped", &metadata.ErrBadVersionNumber{Msg: "bad version number, expected 2, got 3"}, fetchRecord{role: "root"},
			ErrBadVersion, "root: version 3 served where version 2 was expected", nil},
		{"snapshot hash", &metadata.ErrLengthOrHashMismatch{Msg: "hash verification failed - mismatch for algorithm sha256"}, lastSnap,
			ErrHashMismatch, "snapshot: does not match the length and hashes the timestamp lists", new(*metadata.ErrLengthOrHashMismatch)},
		{"targets length", &metadata.ErrLengthOrHashMismatch{Msg: "length verification failed - expected 10, got 9"}, lastTargets,
			ErrLengthMismatch, "targets metadata: does not match the length and hashes the snapshot lists", nil},
		{"404", &metadata.ErrDownloadHTTP{StatusCode: 404, URL: "http://h/m/timestamp.json"}, lastTS,
			ErrNotFound, "timestamp: not found at http://h/m/timestamp.json (HTTP 404)", new(*metadata.ErrDownloadHTTP)},
		{"500", &metadata.ErrDownloadHTTP{StatusCode: 500, URL: "http://h/m/timestamp.json"}, lastTS,
			ErrHTTP, "timestamp: http://h/m/timestamp.json answered HTTP 500", nil},
		{"too long", &metadata.ErrDownloadLengthMismatch{Msg: "x is more than the 16384 bytes allowed"}, lastTS,
			ErrLengthExceeded, "timestamp: x is more than the 16384 bytes allowed", new(*metadata.ErrDownloadLengthMismatch)},
		{"wrong type", &metadata.ErrRepository{Msg: "expected timestamp, got targets"}, lastTS,
			ErrBadMetadata, "timestamp: expected timestamp, got targets", new(*metadata.ErrRepository)},
		{"role missing from snapshot", fmt.Errorf("role %s not found in snapshot", "acme"), lastTargets,
			ErrBadMetadata, "delegated role acme metadata: not listed in the snapshot", nil},
		{"connection cut", fmt.Errorf("read: %w", io.ErrUnexpectedEOF), lastTS,
			ErrNetwork, "timestamp: download from http://h/m/timestamp.json failed: read: unexpected EOF", nil},
		{"multi-line text", &metadata.ErrRepository{Msg: "a\nb"}, lastTS,
			ErrBadMetadata, "timestamp: a b", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := classify(context.Background(), tt.err, tt.last, trusted, ref)
			if !errors.Is(err, tt.wantKind) || !strings.HasPrefix(err.Error(), tt.wantMsg) {
				t.Fatalf("classify = %q (%s), want %s starting %q", err, Reason(err), tt.wantKind, tt.wantMsg)
			}
			if tt.wantAs != nil && !errors.As(err, tt.wantAs) {
				t.Errorf("errors.As(%T) fails: go-tuf's error is not wrapped", tt.wantAs)
			}
			if !errors.Is(err, tt.err) {
				t.Errorf("errors.Is(err, cause) fails")
			}
		})
	}
}

func TestReason(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		err       error
		want      string
		transient bool
	}{
		{nil, "", false},
		{errors.New("x"), "unknown", false},
		{context.Canceled, "canceled", false},
		{fmt.Errorf("upgrade: %w", &Error{Kind: ErrExpired, Role: "timestamp", Msg: "expired"}), "expired", false},
		{&Error{Kind: ErrNetwork, Msg: "reset"}, "network", true},
		{&Error{Kind: ErrHTTP, Msg: "503"}, "http_error", true},
		{classify(ctx, fmt.Errorf("get: %w", context.Canceled), fetchRecord{role: "snapshot"}, nil, time.Now()), "canceled", false},
	}
	for _, tt := range tests {
		if got := Reason(tt.err); got != tt.want {
			t.Errorf("Reason(%v) = %q, want %q", tt.err, got, tt.want)
		}
		if got := Transient(tt.err); got != tt.transient {
			t.Errorf("Transient(%v) = %v, want %v", tt.err, got, tt.transient)
		}
	}
}
