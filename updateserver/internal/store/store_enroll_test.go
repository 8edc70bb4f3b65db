package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/store/storetest"
)

// TestEnrollBatchDecidesInOrder: enrollments written in one batch are
// decided one after the other, as they were one transaction each: a
// token's uses run out within the batch, a site enrolled earlier in the
// batch is enrolled (refused to another token, re-enrolled by its
// replace token), refusals consume nothing, and every enrollment that
// went through is stored, audited and answers with its own credential.
func TestEnrollBatchDecidesInOrder(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, storetest.Path(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now()
	for _, et := range []NewEnrollToken{
		{Secret: "two", Client: "acme", Uses: 2},
		{Secret: "many", Client: "acme", Uses: 10},
		{Secret: "re", Client: "acme", Site: "a1", Replace: true, Uses: 1},
		{Secret: "other", Client: "globex", Uses: 5},
	} {
		et.ExpiresAt, et.By = now.Add(time.Hour), "test"
		if _, err := s.CreateEnrollToken(ctx, now, et); err != nil {
			t.Fatal(err)
		}
	}
	type want struct {
		token, site, client string
		err                 error
		replaced            bool
	}
	cases := []want{
		{"two", "a1", "acme", nil, false},
		{"two", "a2", "acme", nil, false},
		{"two", "a3", "acme", ErrEnrollTokenUsed, false},     // its 2 uses went to the two before
		{"many", "a1", "acme", ErrSiteEnrolled, false},       // enrolled just before, in this batch
		{"re", "a1", "acme", nil, true},                      // its replace token
		{"other", "g1", "acme", ErrWrongClient, false},       // refused: consumes nothing
		{"nope", "a4", "acme", ErrEnrollTokenInvalid, false}, // no such token
		{"many", "a4", "acme", nil, false},
		{"other", "g1", "globex", nil, false},
	}
	var batch []*enrollReq
	for _, c := range cases {
		batch = append(batch, &enrollReq{ctx: ctx, now: now, token: c.token, credHash: HashSecret("dla_" + c.token + c.site),
			req: protocol.EnrollRequest{Site: c.site, Client: c.client, Product: "erp", Hostname: "h"}, done: make(chan struct{})})
	}
	s.enrollBatch(batch)
	for i, c := range cases {
		r := batch[i]
		if !errors.Is(r.err, c.err) || r.replaced != c.replaced {
			t.Errorf("%s enrolls %s of %s: err %v replaced %t; want %v, %t", c.token, c.site, c.client, r.err, r.replaced, c.err, c.replaced)
		}
	}
	for cred, site := range map[string]string{"dla_rea1": "a1", "dla_twoa2": "a2", "dla_manya4": "a4", "dla_otherg1": "g1"} {
		if got, err := s.SiteByCredential(ctx, cred); err != nil || got != site {
			t.Errorf("credential %s: site %q, %v; want %s", cred, got, err, site)
		}
	}
	if got, err := s.SiteByCredential(ctx, "dla_twoa1"); err == nil {
		t.Errorf("a1's first credential still works after its re-enrollment (site %s)", got)
	}
	uses := map[string]int{}
	for _, tok := range mustListEnrollTokens(t, s) {
		uses[tok.Client+"/"+tok.Site] += tok.UsesLeft
	}
	if want := map[string]int{"acme/": 0 + 9, "acme/a1": 0, "globex/": 4}; !equalMaps(uses, want) {
		t.Errorf("uses left %v, want %v", uses, want)
	}
	var enrolls, reenrolls int
	if err := s.queryRow(ctx, `SELECT COUNT(*) FROM audit_log WHERE action = 'site.enroll'`).Scan(&enrolls); err != nil {
		t.Fatal(err)
	}
	if err := s.queryRow(ctx, `SELECT COUNT(*) FROM audit_log WHERE action = 'site.reenroll' AND object = 'site a1'`).Scan(&reenrolls); err != nil {
		t.Fatal(err)
	}
	if enrolls != 4 || reenrolls != 1 {
		t.Errorf("audit: %d site.enroll, %d site.reenroll of a1; want 4 and 1", enrolls, reenrolls)
	}
}

func mustListEnrollTokens(t *testing.T, s *Store) []protocol.EnrollTokenInfo {
	t.Helper()
	toks, err := s.ListEnrollTokens(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return toks
}

func equalMaps(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
