package store

import (
	"context"
	"database/sql"
	"fmt"
	"testing"
	"time"

	"github.com/dropless/dropless/updateserver/internal/store/storetest"
)

// BenchmarkRolloutSites100000: the scheduler's read of a rollout of
// 100,000 sites (RolloutSites, every pass), in its last wave: every site
// has its job, 90% succeeded, 10% running. On the tests' store
// (PostgreSQL with TEST_POSTGRES_DSN).
func BenchmarkRolloutSites100000(b *testing.B) {
	const n = 100000
	ctx := context.Background()
	s, err := Open(ctx, storetest.Path(b))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	now := formatTime(time.Now())
	var id int64
	err = s.tx(ctx, func(tx *sql.Tx) error {
		if err := tx.QueryRow(`INSERT INTO rollouts (product, version, state, waves, max_parallel, max_failures, created_at, created_by)
			VALUES ('p', '1.1.0', 'running', '10,50,100', ?, '5%', ?, 'b') RETURNING id`, n, now).Scan(&id); err != nil {
			return err
		}
		for i := 0; i < n; i += 1000 {
			var sites, rs, jobs []any
			for k := i; k < i+1000; k++ {
				site := fmt.Sprintf("s%06d", k)
				result := "succeeded"
				if k%10 == 0 {
					result = "running"
				}
				sites = append(sites, site, "h"+site, now)
				rs = append(rs, id, site, min(2, k*10/n), k)
				jobs = append(jobs, "j"+site, site, result, now, now, id)
			}
			for _, q := range []struct {
				sql  string
				args []any
				cols int
			}{
				{`INSERT INTO sites (site, client, product, credential_hash, enrolled_at) VALUES `, sites, 3},
				{`INSERT INTO rollout_sites (rollout_id, site, wave, pos) VALUES `, rs, 4},
				{`INSERT INTO jobs (id, site, product, from_version, to_version, target, result, created_at, created_by, last_progress_at, rollout_id) VALUES `, jobs, 6},
			} {
				row := map[int]string{3: "(?, 'c', 'p', ?, ?)", 4: "(?, ?, ?, ?)", 6: "(?, ?, 'p', '1.0.0', '1.1.0', 't', ?, ?, 'b', ?, ?)"}[q.cols]
				vals := row
				for range len(q.args)/q.cols - 1 {
					vals += ", " + row
				}
				if _, err := tx.Exec(q.sql+vals, q.args...); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		sites, err := s.RolloutSites(ctx, id)
		if err != nil || len(sites) != n {
			b.Fatalf("%d sites, %v", len(sites), err)
		}
	}
}
