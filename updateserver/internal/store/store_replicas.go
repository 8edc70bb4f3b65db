package store

import (
	"database/sql"
	"strings"

	"github.com/dropless/dropless/updateserver/internal/bus"
)

// The caches of replicas. Several servers on one PostgreSQL database
// each keep the caches of store_presence.go; a change made through one
// must reach the others' caches too. So every change a cache depends on
// sends, inside its transaction (so exactly when it commits), a message
// on the bus's Cache topic, and each replica's ListenCaches drops what
// the message names, as the change would have here:
//
//   - "cred\tSITE": the site's credential was replaced (re-enrollment):
//     its cached credential and its report are dropped;
//   - "site\tSITE": the site's row was written (a check-in that changed
//     the report, an installed version set by an offline report): its
//     report is dropped, so the next check-in here writes;
//   - "jobs\tSITE": a job was created for the site: its "no open job"
//     is dropped (a bare "jobs", as servers before 28 Nov sent for any
//     job created, started or ended, drops every site's);
//   - "maint": a window or freeze changed.
//
// After the bus reconnects (bus.Resync), messages may have been lost:
// everything but the sites' clients (which never change) is dropped.
// With bus.Local (SQLite, one server) nothing is sent or received.

// Cache message kinds.
const (
	cacheCred  = "cred"
	cacheSite  = "site"
	cacheJobs  = "jobs"
	cacheMaint = "maint"
)

// SetBus makes the store tell the other replicas, through b, about the
// changes their caches depend on. Call it before the store is used.
func (s *Store) SetBus(b bus.Bus) { s.bus = b }

// tellCaches sends items (Cache message lines) inside tx.
func (s *Store) tellCaches(tx *sql.Tx, items ...string) error {
	if s.bus == nil || len(items) == 0 {
		return nil
	}
	return s.bus.InTx(func(q string, args ...any) error {
		_, err := tx.Exec(q, args...)
		return err
	}, bus.Lines(bus.Cache, items)...)
}

// ListenCaches makes the store's caches drop what other replicas'
// changes, heard through b, make stale. It returns the cancel of its
// subscription.
func (s *Store) ListenCaches(b bus.Bus) (cancel func()) {
	return b.Subscribe(bus.Cache, func(p string) {
		if p == bus.Resync {
			s.dropCaches()
			return
		}
		var created []string
		for _, line := range strings.Split(p, "\n") {
			kind, site, _ := strings.Cut(line, "\t")
			switch kind {
			case cacheCred:
				s.credentialReplaced(site)
				s.forgetReport(site)
			case cacheSite:
				s.forgetReport(site)
			case cacheJobs:
				if site == "" {
					s.c.jobGen.Add(1)
				} else {
					created = append(created, site)
				}
			case cacheMaint:
				s.maintChanged()
			}
		}
		if len(created) > 0 {
			s.jobsCreated(created)
		}
	})
}

// dropCaches drops every cache but the sites' clients.
func (s *Store) dropCaches() {
	s.c.credMu.Lock()
	s.c.credGen++
	s.c.creds, s.c.credOf = map[string]string{}, map[string]string{}
	s.c.credMu.Unlock()
	s.c.jobGen.Add(1)
	s.maintChanged()
	s.c.mu.RLock()
	entries := make([]*seenEntry, 0, len(s.c.sites))
	for _, e := range s.c.sites {
		entries = append(entries, e)
	}
	s.c.mu.RUnlock()
	for _, e := range entries {
		e.forget()
	}
}
