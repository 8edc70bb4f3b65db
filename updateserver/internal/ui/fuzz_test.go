package ui

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/store"
)

// FuzzAgentTextStaysText renders the fleet and site pages with text an
// agent sent (host name, drift lines, event messages, the state) and
// checks that it added no markup: the page has exactly the tags it has
// with harmless text in the same places.
func FuzzAgentTextStaysText(f *testing.F) {
	for _, seed := range []string{"", "x", `<img src=x onerror=alert(1)>`, `"><script>alert(1)</script>`, `</textarea><b>`, "javascript:alert(1)", "<!--", "]]>", "\x00<\u2028>"} {
		f.Add(seed)
	}
	s := &Server{pages: parsePages()}
	render := func(text string) string {
		now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
		st := protocol.Site{Site: "s", Client: "c", Product: "p", InstalledVersion: "1.0.0", State: text, Hostname: text, OS: text,
			Drift: []string{text, "files/" + text}, LastSeen: &now}
		job := protocol.Job{ID: "j", Result: protocol.ResultRolledBack, Reason: text, CreatedBy: text,
			Events: []protocol.Event{{Seq: 1, State: text, Message: text, At: now}}}
		var out strings.Builder
		for _, pg := range []struct {
			name string
			data any
		}{
			{"site.html", siteData{Site: st, Jobs: []protocol.Job{job}}},
			{"fleet.html", fleetData{Sites: []store.SiteRow{{Site: st, LastResult: text}}, Facets: store.SiteFacets{States: []string{text}}}},
		} {
			w := httptest.NewRecorder()
			s.render(w, 200, pg.name, page{Token: store.Token{Name: "n", Role: protocol.RoleViewer}, Data: pg.data})
			out.WriteString(w.Body.String())
		}
		return out.String()
	}
	want := strings.Count(render("x"), "<")
	f.Fuzz(func(t *testing.T, text string) {
		if text == "" {
			t.Skip("an empty field leaves its part of the page out")
		}
		if got := strings.Count(render(text), "<"); got != want {
			t.Fatalf("text %q changed the page's markup: %d '<' instead of %d", text, got, want)
		}
	})
}
