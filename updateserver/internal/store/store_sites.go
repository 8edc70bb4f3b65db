package store

import (
	"context"
	"database/sql"
	"errors"
	"strings"

	"github.com/dropless/dropless/pkg/protocol"
)

const siteColumns = `site, client, product, installed_version, target_version, state, agent_version, os, arch, hostname, last_seen, enrolled_at, drift,
	follow_channel, follow_pin`

func scanSite(r scanner) (protocol.Site, error) {
	var st protocol.Site
	var lastSeen sql.NullString
	var enrolled, drift string
	err := r.Scan(&st.Site, &st.Client, &st.Product, &st.InstalledVersion, &st.TargetVersion, &st.State,
		&st.AgentVersion, &st.OS, &st.Arch, &st.Hostname, &lastSeen, &enrolled, &drift, &st.Channel, &st.Pin)
	if drift != "" {
		st.Drift = strings.Split(drift, "\n")
	}
	st.LastSeen = nullTime(lastSeen)
	st.EnrolledAt = parseTime(enrolled)
	return st, err
}

// SiteFilter selects sites; empty fields match all.
type SiteFilter struct{ Client, Product string }

// ListSites returns matching sites ordered by client and site.
func (s *Store) ListSites(ctx context.Context, f SiteFilter) ([]protocol.Site, error) {
	if err := s.reportsWritten(ctx); err != nil {
		return nil, err
	}
	where, args := f.where()
	rows, err := s.query(ctx, `SELECT `+siteColumns+` FROM sites`+where+` ORDER BY client, site`, args...)
	if err != nil {
		return nil, err
	}
	return s.withLastSeen(collect(rows, scanSite))
}

// where is the WHERE clause of f (empty fields match any) and its
// arguments.
func (f SiteFilter) where() (string, []any) {
	q := ` WHERE 1=1`
	var args []any
	if f.Client != "" {
		q += ` AND client = ?`
		args = append(args, f.Client)
	}
	if f.Product != "" {
		q += ` AND product = ?`
		args = append(args, f.Product)
	}
	return q, args
}

// SiteNames returns the names of the matching sites, in ListSites' order:
// what a rollout of a client's 100,000 sites needs of them, without
// reading (and scanning) every column of every row.
func (s *Store) SiteNames(ctx context.Context, f SiteFilter) ([]string, error) {
	where, args := f.where()
	rows, err := s.query(ctx, `SELECT site FROM sites`+where+` ORDER BY client, site`, args...)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanString)
}

// scanString scans a row of one text column.
func scanString(r scanner) (string, error) {
	var v string
	err := r.Scan(&v)
	return v, err
}

// GetSite returns one site.
func (s *Store) GetSite(ctx context.Context, site string) (protocol.Site, error) {
	if err := s.reportsWritten(ctx); err != nil {
		return protocol.Site{}, err
	}
	st, err := s.scanSite(s.queryRow(ctx, `SELECT `+siteColumns+` FROM sites WHERE site = ?`, site))
	if errors.Is(err, sql.ErrNoRows) {
		return st, ErrNotFound
	}
	return st, err
}

// SitesByName returns the named sites, in a few queries (one per
// inChunk names); a site not enrolled is not in the map.
func (s *Store) SitesByName(ctx context.Context, names []string) (map[string]protocol.Site, error) {
	if err := s.reportsWritten(ctx); err != nil {
		return nil, err
	}
	// Not through the kept statements (s.query): each length of the IN
	// list is a query of its own, and they would fill the cache.
	db, _ := s.readPool(ctx)
	return sitesIn(names, func(q string, args ...any) (*sql.Rows, error) { return db.QueryContext(ctx, q, args...) })
}

// sitesIn reads the named sites with query, inChunk at a time.
func sitesIn(names []string, query func(q string, args ...any) (*sql.Rows, error)) (map[string]protocol.Site, error) {
	out := make(map[string]protocol.Site, len(names))
	err := chunks(names, func(part []string) error {
		in, args := inList(part)
		rows, err := query(`SELECT `+siteColumns+` FROM sites WHERE site IN (`+in+`)`, args...)
		if err != nil {
			return err
		}
		sites, err := collect(rows, scanSite)
		for _, st := range sites {
			out[st.Site] = st
		}
		return err
	})
	return out, err
}
