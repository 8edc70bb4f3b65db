package notify

import (
	"errors"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// The test vector published with the Standard Webhooks specification
// (its reference libraries' "sign function works" test).
func TestSignMatchesStandardWebhooksVector(t *testing.T) {
	const (
		secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
		id     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
		body   = `{"test": 2432232314}`
		want   = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
	)
	ts := time.Unix(1614265330, 0)
	got, err := Sign(secret, id, ts, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("signature %s, want %s", got, want)
	}
	h := http.Header{}
	h.Set(HeaderID, id)
	h.Set(HeaderTimestamp, "1614265330")
	h.Set(HeaderSignature, "v1,bm90IHRoaXMgb25l "+want) // several: one valid is enough
	if err := Verify(secret, h, []byte(body), ts.Add(time.Minute), 5*time.Minute); err != nil {
		t.Fatalf("Verify of the spec's vector: %v", err)
	}
}

func TestVerifyRefuses(t *testing.T) {
	secret := NewSecret()
	now := time.Now()
	body := []byte(`{"type":"job.succeeded"}`)
	sign := func(id string, ts time.Time, b []byte) http.Header {
		sig, err := Sign(secret, id, ts, b)
		if err != nil {
			t.Fatal(err)
		}
		h := http.Header{}
		h.Set(HeaderID, id)
		h.Set(HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
		h.Set(HeaderSignature, sig)
		return h
	}
	tests := []struct {
		name   string
		h      http.Header
		body   []byte
		secret string
	}{
		{"tampered body", sign("msg_1", now, body), []byte(`{"type":"job.failed"}`), secret},
		{"other id", func() http.Header { h := sign("msg_1", now, body); h.Set(HeaderID, "msg_2"); return h }(), body, secret},
		{"old timestamp (replay)", sign("msg_1", now.Add(-time.Hour), body), body, secret},
		{"wrong secret", sign("msg_1", now, body), body, NewSecret()},
		{"no signature", func() http.Header { h := sign("msg_1", now, body); h.Del(HeaderSignature); return h }(), body, secret},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := Verify(tt.secret, tt.h, tt.body, now, 5*time.Minute); !errors.Is(err, ErrBadSignature) {
				t.Fatalf("Verify = %v, want ErrBadSignature", err)
			}
		})
	}
	if err := Verify(secret, sign("msg_1", now, body), body, now, 5*time.Minute); err != nil {
		t.Fatalf("a good message is refused: %v", err)
	}
}

func TestParseSecret(t *testing.T) {
	tests := []struct {
		name, in string
		wantErr  bool
	}{
		{"made", NewSecret(), false},
		{"spec example", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", false},
		{"no prefix", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", true},
		{"not base64", "whsec_!!!!", true},
		{"too short", "whsec_c2hvcnQ=", true},
	}
	for _, tt := range tests {
		if _, err := ParseSecret(tt.in); (err != nil) != tt.wantErr {
			t.Errorf("%s: ParseSecret(%q) = %v, want error %t", tt.name, tt.in, err, tt.wantErr)
		}
	}
}

func FuzzRetryAfter(f *testing.F) {
	for _, s := range []string{"", "5", "-1", "Wed, 21 Oct 2015 07:28:00 GMT", "99999999999999999999", "abc"} {
		f.Add(s)
	}
	now := time.Now()
	f.Fuzz(func(t *testing.T, v string) {
		if d := retryAfter(v, now); d < 0 {
			t.Fatalf("retryAfter(%q) = %s, negative", v, d)
		}
	})
}
