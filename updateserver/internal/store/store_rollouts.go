package store

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"
)

// RolloutRow is a rollout as the scheduler sees it. Which of its sites
// started is not here: the jobs say it (JobRow.RolloutID).
type RolloutRow struct {
	ID               int64
	Product, Version string
	State, Reason    string
	// Waves are the cumulative percentages asked for; Canary: wave 0 is
	// the canary sites.
	Waves       []float64
	Canary      bool
	MaxParallel int
	MaxFailures string
	Soak        time.Duration
	Hold        bool
	// Wave is the wave being worked on; its sites start from WaveAt.
	Wave   int
	WaveAt time.Time
	// FailuresSeen is the failure count when the rollout last paused for
	// failures: a resumed rollout pauses again at its next failure.
	FailuresSeen int
	CreatedAt    time.Time
	CreatedBy    string
	EndedAt      *time.Time
}

// RolloutSiteRow is one site of a rollout: its wave, the outcome the
// scheduler recorded without a job ("" when its jobs tell, or it has not
// started), and its jobs of the rollout, oldest first.
type RolloutSiteRow struct {
	Site            string
	Wave            int
	Outcome, Reason string
	Jobs            []RolloutJob
}

// RolloutJob is a job a rollout made.
type RolloutJob struct {
	ID, Result, Reason string
}

const rolloutColumns = `id, product, version, state, reason, waves, canary, max_parallel, max_failures, soak_ns, hold, wave, wave_at_ns,
	failures_seen, created_at, created_by, ended_at`

func scanRollout(r scanner) (RolloutRow, error) {
	var ro RolloutRow
	var waves, created string
	var soak, waveAt int64
	var ended sql.NullString
	err := r.Scan(&ro.ID, &ro.Product, &ro.Version, &ro.State, &ro.Reason, &waves, &ro.Canary, &ro.MaxParallel, &ro.MaxFailures, &soak, &ro.Hold,
		&ro.Wave, &waveAt, &ro.FailuresSeen, &created, &ro.CreatedBy, &ended)
	for _, w := range strings.Split(waves, ",") {
		if p, err := strconv.ParseFloat(w, 64); err == nil {
			ro.Waves = append(ro.Waves, p)
		}
	}
	ro.Soak, ro.WaveAt = time.Duration(soak), time.Unix(0, waveAt).UTC()
	ro.CreatedAt, ro.EndedAt = parseTime(created), nullTime(ended)
	return ro, err
}

// Rollout returns one rollout; ErrNotFound when there is none.
func (s *Store) Rollout(ctx context.Context, id int64) (RolloutRow, error) {
	ro, err := scanRollout(s.queryRow(ctx, `SELECT `+rolloutColumns+` FROM rollouts WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return ro, ErrNotFound
	}
	return ro, err
}

// Rollouts returns the rollouts, newest first; with states, only those
// in one of them.
func (s *Store) Rollouts(ctx context.Context, states ...string) ([]RolloutRow, error) {
	q := `SELECT ` + rolloutColumns + ` FROM rollouts`
	var args []any
	if len(states) > 0 {
		var in string
		in, args = inList(states)
		q += ` WHERE state IN (` + in + `)`
	}
	rows, err := s.query(ctx, q+` ORDER BY id DESC`, args...)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanRollout)
}

// RolloutSites returns a rollout's sites in order (wave, then position),
// each with its jobs of the rollout.
//
// The scheduler reads this every pass. On PostgreSQL both orders are
// sorted here, not in SQL: it sorted 100,000 rows of each on disk
// (beyond its work_mem), most of the read's 800 ms, while its rows come
// in insertion order, that is sorted, nearly always. SQLite sorts in
// memory, faster than Go does.
func (s *Store) RolloutSites(ctx context.Context, id int64) ([]RolloutSiteRow, error) {
	pg := s.dialect == Postgres
	siteOrder, jobOrder := ` ORDER BY wave, pos`, ` ORDER BY rowid`
	if pg {
		siteOrder, jobOrder = "", ""
	}
	rows, err := s.query(ctx, `SELECT site, wave, pos, outcome, reason FROM rollout_sites WHERE rollout_id = ?`+siteOrder, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	sites := []RolloutSiteRow{}
	var pos []int64
	for rows.Next() {
		var rs RolloutSiteRow
		var p int64
		if err := rows.Scan(&rs.Site, &rs.Wave, &p, &rs.Outcome, &rs.Reason); err != nil {
			return nil, err
		}
		sites, pos = append(sites, rs), append(pos, p)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows.Close()
	if pg {
		sortByPlace(sites, pos)
	}
	idx := make(map[string]int, len(sites))
	for i, rs := range sites {
		idx[rs.Site] = i
	}
	jrows, err := s.query(ctx, `SELECT site, rowid, id, result, reason FROM jobs WHERE rollout_id = ?`+jobOrder, id)
	if err != nil {
		return nil, err
	}
	defer jrows.Close()
	type siteJob struct {
		site  string
		rowid int64
		job   RolloutJob
	}
	var unsorted []siteJob // PostgreSQL's: sorted before they are attached
	for jrows.Next() {
		var j siteJob
		if err := jrows.Scan(&j.site, &j.rowid, &j.job.ID, &j.job.Result, &j.job.Reason); err != nil {
			return nil, err
		}
		if pg {
			unsorted = append(unsorted, j)
		} else if i, ok := idx[j.site]; ok {
			sites[i].Jobs = append(sites[i].Jobs, j.job)
		}
	}
	if err := jrows.Err(); err != nil {
		return nil, err
	}
	// Each site's jobs oldest first.
	if byAge := func(a, b siteJob) int { return cmp.Compare(a.rowid, b.rowid) }; !slices.IsSortedFunc(unsorted, byAge) {
		slices.SortFunc(unsorted, byAge)
	}
	for _, j := range unsorted {
		if i, ok := idx[j.site]; ok {
			sites[i].Jobs = append(sites[i].Jobs, j.job)
		}
	}
	return sites, nil
}

// sortByPlace sorts a rollout's sites by wave, then position (pos, in
// step with sites); already sorted, it only checks.
func sortByPlace(sites []RolloutSiteRow, pos []int64) {
	less := func(i, j int) int {
		return cmp.Or(cmp.Compare(sites[i].Wave, sites[j].Wave), cmp.Compare(pos[i], pos[j]))
	}
	sorted := true
	for i := 1; i < len(sites) && sorted; i++ {
		sorted = less(i-1, i) <= 0
	}
	if sorted {
		return
	}
	order := make([]int, len(sites))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, less)
	out := make([]RolloutSiteRow, len(sites))
	for k, i := range order {
		out[k] = sites[i]
	}
	copy(sites, out)
}

// NewRolloutSite is a site of a new rollout, in its wave.
type NewRolloutSite struct {
	Site string
	Wave int
}

// rolloutSitesPerInsert is how many rollout sites one INSERT of
// CreateRollout holds (4 values each).
const rolloutSitesPerInsert = 8000

// CreateRollout stores a new rollout and its sites (in order) and
// returns its ID.
func (t *JobTx) CreateRollout(ro RolloutRow, sites []NewRolloutSite) (int64, error) {
	waves := make([]string, len(ro.Waves))
	for i, w := range ro.Waves {
		waves[i] = strconv.FormatFloat(w, 'f', -1, 64)
	}
	var id int64
	err := t.tx.QueryRow(`INSERT INTO rollouts (product, version, state, waves, canary, max_parallel, max_failures, soak_ns, hold, wave, wave_at_ns, created_at, created_by)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		ro.Product, ro.Version, ro.State, strings.Join(waves, ","), ro.Canary, ro.MaxParallel, ro.MaxFailures, int64(ro.Soak), ro.Hold,
		ro.Wave, ro.WaveAt.UnixNano(), formatTime(ro.CreatedAt), ro.CreatedBy).Scan(&id)
	if err != nil {
		return 0, err
	}
	// A few multi-row statements: the writer holds the write lock of
	// every replica meanwhile, and a row a round trip made a rollout of
	// 20,000 sites hold it for seconds.
	for i := 0; i < len(sites); i += rolloutSitesPerInsert {
		part := sites[i:min(i+rolloutSitesPerInsert, len(sites))]
		args := make([]any, 0, 4*len(part))
		for k, rs := range part {
			args = append(args, id, rs.Site, rs.Wave, i+k)
		}
		q := `INSERT INTO rollout_sites (rollout_id, site, wave, pos) VALUES (?, ?, ?, ?)` + strings.Repeat(", (?, ?, ?, ?)", len(part)-1)
		if err := t.exec(q, args...); err != nil {
			return 0, err
		}
	}
	return id, nil
}

// ActiveRolloutSites maps each site in a running or paused rollout of
// product to that rollout's ID.
func (t *JobTx) ActiveRolloutSites(product string) (map[string]int64, error) {
	rows, err := t.tx.Query(`SELECT rs.site, r.id FROM rollout_sites rs JOIN rollouts r ON r.id = rs.rollout_id
		WHERE r.product = ? AND r.state IN ('running','paused')`, product)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var site string
		var id int64
		if err := rows.Scan(&site, &id); err != nil {
			return nil, err
		}
		out[site] = id
	}
	return out, rows.Err()
}

// Rollout returns one rollout as the transaction sees it.
func (t *JobTx) Rollout(id int64) (RolloutRow, error) {
	st, err := t.stmt(`SELECT ` + rolloutColumns + ` FROM rollouts WHERE id = ?`)
	if err != nil {
		return RolloutRow{}, err
	}
	ro, err := scanRollout(st.QueryRow(id))
	if errors.Is(err, sql.ErrNoRows) {
		return ro, ErrNotFound
	}
	return ro, err
}

// UpdateRollout writes a rollout's state, reason, wave, WaveAt,
// FailuresSeen and EndedAt.
func (t *JobTx) UpdateRollout(ro RolloutRow) error {
	var ended sql.NullString
	if ro.EndedAt != nil {
		ended = sql.NullString{String: formatTime(*ro.EndedAt), Valid: true}
	}
	return t.exec(`UPDATE rollouts SET state = ?, reason = ?, wave = ?, wave_at_ns = ?, failures_seen = ?, ended_at = ? WHERE id = ?`,
		ro.State, ro.Reason, ro.Wave, ro.WaveAt.UnixNano(), ro.FailuresSeen, ended, ro.ID)
}

// RolloutSitesStarted returns which of sites the rollout has started: it
// made a job for it, or recorded its outcome without one. A few queries
// for all (one per inChunk sites).
func (t *JobTx) RolloutSitesStarted(id int64, sites []string) (map[string]bool, error) {
	out := map[string]bool{}
	err := chunks(sites, func(part []string) error {
		in, args := inList(part)
		q := `SELECT site FROM jobs WHERE rollout_id = ? AND site IN (` + in + `)
			UNION SELECT site FROM rollout_sites WHERE rollout_id = ? AND outcome != '' AND site IN (` + in + `)`
		st, err := t.stmt(q)
		if err != nil {
			return err
		}
		rows, err := st.Query(append(append(append([]any{id}, args...), id), args...)...)
		if err != nil {
			return err
		}
		names, err := collect(rows, scanString)
		for _, n := range names {
			out[n] = true
		}
		return err
	})
	return out, err
}

// SetRolloutSiteOutcome records how a site of the rollout ended without
// a job of it: it ran the version already (succeeded), it could not be
// planned (failed), or the rollout was cancelled before it started.
func (t *JobTx) SetRolloutSiteOutcome(id int64, site, outcome, reason string) error {
	return t.exec(`UPDATE rollout_sites SET outcome = ?, reason = ? WHERE rollout_id = ? AND site = ?`, outcome, reason, id, site)
}

// CancelWaitingRolloutSites marks the rollout's sites that never started
// cancelled.
func (t *JobTx) CancelWaitingRolloutSites(id int64, reason string) error {
	return t.exec(`UPDATE rollout_sites SET outcome = 'cancelled', reason = ? WHERE rollout_id = ? AND outcome = ''
		AND NOT EXISTS (SELECT 1 FROM jobs WHERE jobs.rollout_id = rollout_sites.rollout_id AND jobs.site = rollout_sites.site)`, reason, id)
}

// RolloutJobsNotStarted returns the rollout's pending jobs no agent has
// picked up, oldest first.
func (t *JobTx) RolloutJobsNotStarted(id int64) ([]JobRow, error) {
	return t.jobRows(`jobs.rollout_id = ? AND jobs.result = 'pending' AND jobs.handed_out_at IS NULL`, id)
}
