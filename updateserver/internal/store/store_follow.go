package store

import (
	"context"
	"database/sql"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
)

// SetFollow makes sites follow channel with pin ("" for none), or, with
// channel "", follow nothing. The audit entry a is written in the same
// transaction. ErrNotFound (nothing changed) when one of them is not
// enrolled.
func (s *Store) SetFollow(ctx context.Context, now time.Time, sites []string, channel, pin string, a Audit) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		for _, site := range sites {
			res, err := tx.Exec(`UPDATE sites SET follow_channel = ?, follow_pin = ? WHERE site = ?`, channel, pin, site)
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n == 0 {
				return ErrNotFound
			}
		}
		return insertAudit(ctx, tx, now, a)
	})
}

// SitesFollowing returns the names of the sites of product that follow
// channel, in name order.
func (s *Store) SitesFollowing(ctx context.Context, product, channel string) ([]string, error) {
	rows, err := s.query(ctx, `SELECT site FROM sites WHERE product = ? AND follow_channel = ? ORDER BY site`, product, channel)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanString)
}

// Followers returns the sites of product that follow a channel ("" for
// every product), ordered by site.
func (s *Store) Followers(ctx context.Context, product string) ([]protocol.Site, error) {
	if err := s.reportsWritten(ctx); err != nil {
		return nil, err
	}
	q := `SELECT ` + siteColumns + ` FROM sites WHERE follow_channel != ''`
	var args []any
	if product != "" {
		q += ` AND product = ?`
		args = append(args, product)
	}
	rows, err := s.query(ctx, q+` ORDER BY site`, args...)
	if err != nil {
		return nil, err
	}
	return s.withLastSeen(collect(rows, scanSite))
}

// JobSummary is what support sees of a site's jobs in a list: its open
// job (the oldest pending or running one), the step that job is at, and
// its newest ended job's result and reason.
type JobSummary struct {
	OpenResult, Step       string
	LastResult, LastReason string
}

// newestEndedJob is the SQL that selects the ID of the newest ended job
// (the one that ended last) of the site site (an SQL expression): what
// last_result means wherever it is shown.
func newestEndedJob(site string) string {
	return `SELECT id FROM jobs WHERE site = ` + site + ` AND result NOT IN ('pending','running') ORDER BY ended_at DESC, rowid DESC LIMIT 1`
}

// JobSummaries returns the job summary of every site that matches f and
// has jobs, by site.
func (s *Store) JobSummaries(ctx context.Context, f SiteFilter) (map[string]JobSummary, error) {
	where, args := ` WHERE 1=1`, []any{}
	if f.Client != "" {
		where += ` AND s.client = ?`
		args = append(args, f.Client)
	}
	if f.Product != "" {
		where += ` AND s.product = ?`
		args = append(args, f.Product)
	}
	out := map[string]JobSummary{}
	// Open jobs: few, found through the jobs_open index. A running job
	// wins over a pending one; its step is its newest event's state.
	rows, err := s.query(ctx, `SELECT j.site, j.result,
		COALESCE((SELECT e.state FROM job_events e WHERE e.job_id = j.id ORDER BY e.seq DESC LIMIT 1), '')
		FROM jobs j JOIN sites s ON s.site = j.site`+where+` AND j.result IN ('pending','running') ORDER BY j.rowid`, args...)
	if err != nil {
		return nil, err
	}
	type open struct{ site, result, step string }
	opens, err := collect(rows, func(r scanner) (open, error) {
		var o open
		err := r.Scan(&o.site, &o.result, &o.step)
		return o, err
	})
	if err != nil {
		return nil, err
	}
	for _, o := range opens {
		sum := out[o.site]
		if sum.OpenResult == "" || (o.result == protocol.ResultRunning && sum.OpenResult != protocol.ResultRunning) {
			sum.OpenResult, sum.Step = o.result, o.step
		}
		out[o.site] = sum
	}
	// The newest ended job of each site.
	rows, err = s.query(ctx, `SELECT s.site, j.result, j.reason FROM sites s JOIN jobs j ON j.id = (`+newestEndedJob("s.site")+`)`+where, args...)
	if err != nil {
		return nil, err
	}
	type last struct{ site, result, reason string }
	lasts, err := collect(rows, func(r scanner) (last, error) {
		var l last
		err := r.Scan(&l.site, &l.result, &l.reason)
		return l, err
	})
	if err != nil {
		return nil, err
	}
	for _, l := range lasts {
		sum := out[l.site]
		sum.LastResult, sum.LastReason = l.result, l.reason
		out[l.site] = sum
	}
	return out, nil
}
