package ui

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/store"
)

// auditPage is how many entries the audit view shows at a time.
const auditPage = 50

type auditData struct {
	Actor, Since string
	Entries      []protocol.AuditEntry
	Next         string // the link to older entries; "" when none
}

// auditView shows the audit log, newest first, as GET /api/v1/audit
// reads it (the same store query and filters).
func (s *Server) auditView(w http.ResponseWriter, r *http.Request, p page, _ string) {
	v := r.URL.Query()
	d := auditData{Actor: strings.TrimSpace(v.Get("actor")), Since: strings.TrimSpace(v.Get("since"))}
	q := store.AuditQuery{Actor: d.Actor, Limit: auditPage + 1}
	if len(d.Actor) > maxFilter {
		s.errorPage(w, r, http.StatusBadRequest, "The actor filter is too long.")
		return
	}
	if d.Since != "" {
		t, err := protocol.ParseSince(d.Since, s.now())
		if err != nil {
			s.errorPage(w, r, http.StatusBadRequest, "since "+err.Error())
			return
		}
		q.Since = t
	}
	if b := v.Get("before"); b != "" {
		n, err := strconv.ParseInt(b, 10, 64)
		if err != nil || n < 1 {
			s.errorPage(w, r, http.StatusBadRequest, "before must be the ID of an audit entry.")
			return
		}
		q.Before = n
	}
	es, err := s.Store.AuditLog(r.Context(), q)
	if err != nil {
		status, msg := s.userError(r, err)
		s.errorPage(w, r, status, msg)
		return
	}
	if len(es) > auditPage {
		es = es[:auditPage]
		next := url.Values{"before": {strconv.FormatInt(es[auditPage-1].ID, 10)}}
		if d.Actor != "" {
			next.Set("actor", d.Actor)
		}
		if d.Since != "" {
			next.Set("since", d.Since)
		}
		d.Next = Prefix + "audit?" + next.Encode()
	}
	d.Entries = es
	p.Title, p.Nav, p.Data = "Audit", "audit", d
	s.render(w, http.StatusOK, "audit.html", p)
}
