package store

import (
	"context"
	"errors"
	"testing"
)

// TestReadWithEndedContext: a read whose caller has gone (its context
// ended) before its statement was ever prepared answers the context's
// error; it does not retry forever.
func TestReadWithEndedContext(t *testing.T) {
	s, _ := openTemp(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.GetUpload(ctx, "x"); !errors.Is(err, context.Canceled) {
		t.Fatalf("GetUpload with an ended context: %v, want context.Canceled", err)
	}
	if _, err := s.query(ctx, `SELECT id FROM uploads`); !errors.Is(err, context.Canceled) {
		t.Fatalf("query with an ended context: %v, want context.Canceled", err)
	}
}
