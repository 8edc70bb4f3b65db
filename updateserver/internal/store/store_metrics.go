package store

import (
	"context"
	"database/sql"
	"time"
)

// SiteState is what the metrics count of a site.
type SiteState struct {
	Product, Version, State string
	LastSeen                *time.Time
}

// SiteStates returns every site's product, installed version, state and
// last check-in.
func (s *Store) SiteStates(ctx context.Context) ([]SiteState, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT product, installed_version, state, last_seen FROM sites`)
	if err != nil {
		return nil, err
	}
	return collect(rows, func(r scanner) (SiteState, error) {
		var st SiteState
		var seen sql.NullString
		err := r.Scan(&st.Product, &st.Version, &st.State, &seen)
		st.LastSeen = nullTime(seen)
		return st, err
	})
}

// ReleaseVersions returns the published versions of each product.
func (s *Store) ReleaseVersions(ctx context.Context) (map[string]map[string]bool, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT product, version FROM releases`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]map[string]bool{}
	for rows.Next() {
		var p, v string
		if err := rows.Scan(&p, &v); err != nil {
			return nil, err
		}
		if out[p] == nil {
			out[p] = map[string]bool{}
		}
		out[p][v] = true
	}
	return out, rows.Err()
}
