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
	if err := s.reportsWritten(ctx); err != nil {
		return nil, err
	}
	rows, err := s.query(ctx, `SELECT site, product, installed_version, state, last_seen FROM sites`)
	if err != nil {
		return nil, err
	}
	return collect(rows, func(r scanner) (SiteState, error) {
		var st SiteState
		var site string
		var seen sql.NullString
		err := r.Scan(&site, &st.Product, &st.Version, &st.State, &seen)
		st.LastSeen = s.lastSeen(site, nullTime(seen))
		return st, err
	})
}

// ReleaseVersions returns the published versions of each product.
func (s *Store) ReleaseVersions(ctx context.Context) (map[string]map[string]bool, error) {
	rows, err := s.query(ctx, `SELECT product, version FROM releases`)
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

// RolloutCounts is how many rollouts are in each state, and how many
// failures (jobs of the rollout that failed or rolled back, sites it
// could not plan) the rollouts in each state have.
func (s *Store) RolloutCounts(ctx context.Context) (rollouts, failures map[string]int, err error) {
	rollouts, failures = map[string]int{}, map[string]int{}
	for _, q := range []struct {
		into map[string]int
		sql  string
	}{
		{rollouts, `SELECT state, COUNT(*) FROM rollouts GROUP BY state`},
		{failures, `SELECT r.state, COUNT(*) FROM jobs j JOIN rollouts r ON r.id = j.rollout_id
			WHERE j.result IN ('failed','rolled_back') GROUP BY r.state`},
		{failures, `SELECT r.state, COUNT(*) FROM rollout_sites rs JOIN rollouts r ON r.id = rs.rollout_id
			WHERE rs.outcome = 'failed' GROUP BY r.state`},
	} {
		rows, err := s.query(ctx, q.sql)
		if err != nil {
			return nil, nil, err
		}
		for rows.Next() {
			var state string
			var n int
			if err := rows.Scan(&state, &n); err != nil {
				rows.Close()
				return nil, nil, err
			}
			q.into[state] += n
		}
		if err := rows.Close(); err != nil {
			return nil, nil, err
		}
		if err := rows.Err(); err != nil {
			return nil, nil, err
		}
	}
	return rollouts, failures, nil
}
