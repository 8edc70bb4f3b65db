package api_test

import (
	"encoding/json"
	"testing"
)

func jsonUnmarshal(tb testing.TB, b []byte, v any) {
	tb.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		tb.Fatalf("%s: %v", b, err)
	}
}
