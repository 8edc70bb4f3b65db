package fleet

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dropless/dropless/pkg/airgap"
	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/fault"
	"github.com/dropless/dropless/updateserver/internal/store"
)

// The report of jobs an agent ran from an air-gap file (airgap.Report)
// reaches the server two ways: the agent sends it itself when it next
// reaches the server (the agent API: the credential names the site), or
// support imports the file client IT carried back (the operator API:
// `sites import-report`, support role, audited). Either way:
//
//   - The report must be signed with the site's agent credential (an
//     HMAC keyed with the credential's hash, which only the agent and
//     this server know). Whoever carries the file can read it, withhold
//     it or import it again, but cannot change a byte of it, nor write
//     one for another site, nor move a report from one site to another.
//     A site enrolled again since the report was written (a new
//     credential) has its old reports refused: support re-runs nothing,
//     the history misses those jobs, and the next check-in reports the
//     installed version anyway.
//   - The site, client and product it names must be the site's.
//   - Each job is stored once, by its ID (offline-...), and each event
//     once by (job, seq): importing the same report twice, or the agent
//     sending it after support imported it, adds nothing. A job ID that
//     belongs to another site is refused.
//   - The site's installed version becomes the report's, unless the
//     server heard newer news: a check-in after the report was written,
//     or another offline job with a later event (a report older than one
//     imported before changes the history only).

// ImportReport stores the signed report body. site is the agent's site on
// the agent API, "" for an operator's import (the report names it; a is
// then the audit entry, its Object and Detail filled in here).
func (f *Fleet) ImportReport(ctx context.Context, site string, body []byte, a *store.Audit) (protocol.ImportReportResponse, error) {
	var resp protocol.ImportReportResponse
	sr, rep, err := airgap.ParseReport(body)
	if err != nil {
		return resp, fault.New(fault.Invalid, "%v", err)
	}
	if site != "" && rep.Site != site {
		return resp, fault.New(fault.Forbidden, "the report is of site %s, this agent is site %s", rep.Site, site)
	}
	var events []protocol.Event
	for _, j := range rep.Jobs {
		for _, e := range j.Events {
			e.Message = protocol.CleanText(e.Message, protocol.KeepMessage, true)
			events = append(events, e)
		}
	}
	err = f.jobs(ctx, f.now(), func(r *jobRun) error {
		resp = protocol.ImportReportResponse{Site: rep.Site}
		st, err := r.tx.Site(rep.Site)
		if errors.Is(err, store.ErrNotFound) {
			return fault.New(fault.NotFound, "site %s is not enrolled: a report is imported into an enrolled site's history (see sites list)", rep.Site)
		}
		if err != nil {
			return err
		}
		if st.Client != rep.Client || st.Product != rep.Product {
			return fault.New(fault.Forbidden, "the report names client %s and product %s, site %s is client %s's %s: refusing it", rep.Client, rep.Product, rep.Site, st.Client, st.Product)
		}
		key, err := r.tx.CredentialHash(rep.Site)
		if err != nil {
			return err
		}
		if err := sr.Verify(key); err != nil {
			return fault.New(fault.Forbidden, "%v: import only the file the site's agent wrote (apply-offline --report)", err)
		}
		for _, j := range rep.Jobs {
			resp.Jobs = append(resp.Jobs, j.ID)
			row, err := r.tx.Job(j.ID)
			switch {
			case err == nil && row.Site != rep.Site:
				return fault.New(fault.Forbidden, "job %s is a job of another site", j.ID)
			case err == nil:
				continue // imported before: its events are deduplicated below
			case !errors.Is(err, store.ErrNotFound):
				return err
			}
			nj := store.NewJob{ID: j.ID, Site: rep.Site, Product: rep.Product, From: j.From, To: j.To, Target: j.Target, CreatedBy: "offline"}
			if err := r.tx.InsertJob(nj, r.now); err != nil {
				return err
			}
			r.signal(JobCreated, store.JobRow{ID: j.ID, Site: rep.Site, Client: st.Client, Product: rep.Product, From: j.From, To: j.To,
				Result: protocol.ResultPending, CreatedBy: nj.CreatedBy}, false)
			resp.New++
		}
		newest, err := r.tx.NewestEventAt(rep.Site, airgap.JobIDPrefix)
		if err != nil {
			return err
		}
		if resp.Events, err = r.recordEvents(rep.Site, events); err != nil {
			return err
		}
		heardSince := st.LastSeen != nil && st.LastSeen.After(rep.WrittenAt)
		mine := latest(events)
		resp.InstalledVersion = st.InstalledVersion
		if rep.InstalledVersion != "" && !heardSince && !newest.After(mine) {
			if err := r.tx.SetInstalledVersion(rep.Site, rep.InstalledVersion); err != nil {
				return err
			}
			resp.InstalledVersion = rep.InstalledVersion
		}
		if a == nil {
			return nil
		}
		a.Object = rep.Site
		a.Detail = fmt.Sprintf("jobs=%s new=%d installed=%s", strings.Join(resp.Jobs, ","), resp.New, resp.InstalledVersion)
		return r.tx.Audit(r.now, *a)
	})
	return resp, err
}

// latest is the agent's time of the newest of evs.
func latest(evs []protocol.Event) time.Time {
	var t time.Time
	for _, e := range evs {
		if e.At.After(t) {
			t = e.At
		}
	}
	return t
}
