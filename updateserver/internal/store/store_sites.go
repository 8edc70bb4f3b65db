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
	q := `SELECT ` + siteColumns + ` FROM sites WHERE 1=1`
	var args []any
	if f.Client != "" {
		q += ` AND client = ?`
		args = append(args, f.Client)
	}
	if f.Product != "" {
		q += ` AND product = ?`
		args = append(args, f.Product)
	}
	rows, err := s.db.QueryContext(ctx, q+` ORDER BY client, site`, args...)
	if err != nil {
		return nil, err
	}
	return collect(rows, s.scanSite)
}

// GetSite returns one site.
func (s *Store) GetSite(ctx context.Context, site string) (protocol.Site, error) {
	st, err := s.scanSite(s.db.QueryRowContext(ctx, `SELECT `+siteColumns+` FROM sites WHERE site = ?`, site))
	if errors.Is(err, sql.ErrNoRows) {
		return st, ErrNotFound
	}
	return st, err
}
