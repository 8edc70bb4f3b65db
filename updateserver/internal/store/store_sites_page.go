package store

import (
	"context"
	"database/sql"
	"strings"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
)

// SitePageQuery selects one page of sites for the dashboard; empty fields
// match all. Every filter and the paging run in SQL, so that a page of a
// fleet of 10,000 sites never reads the fleet whole.
type SitePageQuery struct {
	Client, Product, Version, State string
	// Seen: "online" (last seen at or after OnlineSince), "offline"
	// (never seen, or before it), "" for both.
	Seen        string
	OnlineSince time.Time
	Offset      int
	Limit       int
}

// SiteRow is a site as the fleet view lists it.
type SiteRow struct {
	protocol.Site
	Online bool
	// LastResult is the result of the site's newest ended job ("" when
	// none has ended).
	LastResult string
}

// SitePage is a page of sites and how many match the query in all.
type SitePage struct {
	Sites []SiteRow
	Total int
}

// where is q's WHERE clause and its arguments.
func (q SitePageQuery) where() (string, []any) {
	var conds []string
	var args []any
	for _, f := range []struct{ col, v string }{
		{"client", q.Client}, {"product", q.Product}, {"installed_version", q.Version}, {"state", q.State},
	} {
		if f.v != "" {
			conds = append(conds, f.col+" = ?")
			args = append(args, f.v)
		}
	}
	switch q.Seen {
	case "online":
		conds = append(conds, "last_seen >= ?")
		args = append(args, formatTime(q.OnlineSince))
	case "offline":
		conds = append(conds, "(last_seen IS NULL OR last_seen < ?)")
		args = append(args, formatTime(q.OnlineSince))
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

// SitesPage returns the sites q selects, ordered by client and site, from
// q.Offset on, at most q.Limit, each with the result of its newest ended
// job.
func (s *Store) SitesPage(ctx context.Context, q SitePageQuery) (SitePage, error) {
	var p SitePage
	if err := s.reportsWritten(ctx); err != nil {
		return p, err
	}
	if q.Seen != "" {
		// The filter runs in SQL: on the check-in times kept in memory too.
		if err := s.FlushSeen(ctx); err != nil {
			return p, err
		}
	}
	where, args := q.where()
	if err := s.queryRow(ctx, `SELECT count(*) FROM sites`+where, args...).Scan(&p.Total); err != nil {
		return p, err
	}
	// The page's rows are picked first by rowid, so that the rows an
	// offset skips are skipped in the index (sites_by_client_site), not
	// read from the table.
	rows, err := s.query(ctx, `SELECT `+siteColumns+` FROM sites WHERE rowid IN (SELECT rowid FROM sites`+where+
		` ORDER BY client, site LIMIT ? OFFSET ?) ORDER BY client, site`, append(args, q.Limit, q.Offset)...)
	if err != nil {
		return p, err
	}
	sites, err := s.withLastSeen(collect(rows, scanSite))
	if err != nil {
		return p, err
	}
	p.Sites = make([]SiteRow, len(sites))
	for i, st := range sites {
		p.Sites[i] = SiteRow{Site: st, Online: st.LastSeen != nil && !st.LastSeen.Before(q.OnlineSince)}
		// One indexed look-up per listed site (jobs_by_site): a page
		// holds tens of sites.
		err := s.queryRow(ctx, `SELECT result FROM jobs WHERE id = (`+newestEndedJob("?")+`)`, st.Site).Scan(&p.Sites[i].LastResult)
		if err != nil && err != sql.ErrNoRows {
			return p, err
		}
	}
	return p, nil
}

// VersionCount is how many sites of a product run a version.
type VersionCount struct {
	Product, Version string
	Sites            int
}

// VersionDistribution counts the sites of each product by installed
// version (of one client's sites when client is not ""), by product, the
// most common version first.
func (s *Store) VersionDistribution(ctx context.Context, client string) ([]VersionCount, error) {
	if err := s.reportsWritten(ctx); err != nil {
		return nil, err
	}
	q := `SELECT product, installed_version, count(*) FROM sites`
	var args []any
	if client != "" {
		q += ` WHERE client = ?`
		args = append(args, client)
	}
	rows, err := s.query(ctx, q+` GROUP BY product, installed_version ORDER BY product, count(*) DESC, installed_version`, args...)
	if err != nil {
		return nil, err
	}
	return collect(rows, func(r scanner) (VersionCount, error) {
		var v VersionCount
		return v, r.Scan(&v.Product, &v.Version, &v.Sites)
	})
}

// SiteFacets are the values the fleet view's filters offer.
type SiteFacets struct {
	Products, States []string
}

// Facets returns the distinct products and states of the sites.
func (s *Store) Facets(ctx context.Context) (SiteFacets, error) {
	var f SiteFacets
	var err error
	if f.Products, err = s.distinct(ctx, "product"); err != nil {
		return f, err
	}
	f.States, err = s.distinct(ctx, "state")
	return f, err
}

// distinct returns the distinct values of a column of sites (a constant
// of this package, never input).
func (s *Store) distinct(ctx context.Context, col string) ([]string, error) {
	if err := s.reportsWritten(ctx); err != nil {
		return nil, err
	}
	rows, err := s.query(ctx, `SELECT DISTINCT `+col+` FROM sites ORDER BY 1`)
	if err != nil {
		return nil, err
	}
	return collect(rows, func(r scanner) (string, error) {
		var v string
		return v, r.Scan(&v)
	})
}
