package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestRolloutSitesInOrder: a rollout's sites come in wave, then position
// order (not by name), and each site's jobs oldest first, also after the
// oldest was updated last, and the first site (on PostgreSQL an updated
// row moves, and rows come unsorted without ORDER BY).
func TestRolloutSitesInOrder(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	for _, site := range []string{"a", "b", "c", "d"} {
		enrollSite(t, s, site, "cred-"+site)
	}
	now := time.Now()
	var id int64
	err := s.WithJobs(ctx, func(tx *JobTx) error {
		var err error
		id, err = tx.CreateRollout(RolloutRow{Product: "p", Version: "2", State: "running", Waves: []float64{50, 100}, MaxParallel: 4, MaxFailures: "0",
			CreatedAt: now, CreatedBy: "t"}, []NewRolloutSite{{Site: "d", Wave: 0}, {Site: "b", Wave: 0}, {Site: "c", Wave: 1}, {Site: "a", Wave: 1}})
		if err != nil {
			return err
		}
		for i, j := range []string{"b1", "b2", "c1"} {
			site := j[:1]
			if err := tx.InsertJob(NewJob{ID: j, Site: site, Product: fmt.Sprint("p", i), From: "1", To: "2", Target: "t", CreatedBy: "t", RolloutID: id}, now); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The oldest job of b changes last, and so does the first site.
	if err := s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.Exec(`UPDATE jobs SET result = 'running', reason = 'moved' WHERE id = 'b1'`); err != nil {
			return err
		}
		// Written again: a row that moved (as an update that is not
		// PostgreSQL's HOT does) comes last in its table.
		if _, err := tx.Exec(`DELETE FROM rollout_sites WHERE site = 'd'`); err != nil {
			return err
		}
		_, err := tx.Exec(`INSERT INTO rollout_sites (rollout_id, site, wave, pos) VALUES (?, 'd', 0, 0)`, id)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	sites, err := s.RolloutSites(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, rs := range sites {
		var jobs []string
		for _, j := range rs.Jobs {
			jobs = append(jobs, j.ID+"="+j.Result)
		}
		got = append(got, fmt.Sprintf("%d:%s[%s]", rs.Wave, rs.Site, strings.Join(jobs, " ")))
	}
	if want := "0:d[] 0:b[b1=running b2=pending] 1:c[c1=pending] 1:a[]"; strings.Join(got, " ") != want {
		t.Errorf("rollout sites %s, want %s", strings.Join(got, " "), want)
	}
}
