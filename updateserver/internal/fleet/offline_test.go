package fleet

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/airgap"
	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/fault"
	"github.com/dropless/dropless/updateserver/internal/store"
)

// offlineReport is site's report of one offline job from -> to, signed
// with the credential the test fleet's enroll gave the site.
func (tf *testFleet) offlineReport(site, id, from, to string, at time.Time, signer string) []byte {
	tf.t.Helper()
	rep := airgap.Report{Site: site, Client: "acme", Product: "acme-erp", InstalledVersion: to, WrittenAt: at,
		Jobs: []airgap.ReportJob{{ID: id, From: from, To: to, Target: "acme-erp/acme-erp-" + to + ".tar.gz", Result: protocol.ResultSucceeded,
			Events: []protocol.Event{
				{JobID: id, Seq: 1, State: protocol.StateDownloading, At: at.Add(-time.Minute)},
				{JobID: id, Seq: 2, State: protocol.StateCommitted, Message: to + " passed its health check", At: at},
			}}}}
	b, err := airgap.Sign(rep, airgap.CredentialKey("dla_"+signer))
	if err != nil {
		tf.t.Fatal(err)
	}
	return b
}

func wantFault(t *testing.T, err error, kind fault.Kind, text string) {
	t.Helper()
	f, ok := fault.As(err)
	if !ok || f.Kind != kind || !strings.Contains(err.Error(), text) {
		t.Fatalf("got %v, want a %v saying %q", err, kind, text)
	}
}

// TestImportReport: a report signed by the site's agent lands in its
// history once, however often it is imported, and moves the site's
// installed version; what a carrier of the file could try is refused.
func TestImportReport(t *testing.T) {
	tf := newTestFleet(t)
	tf.enroll("site-a", "acme", "1.0.0", "1")
	tf.enroll("site-b", "acme", "1.0.0", "1")
	tf.advance(time.Hour)
	audit := &store.Audit{Actor: "support", Action: "site.import_report"}
	rep := tf.offlineReport("site-a", "offline-1", "1.0.0", "2.0.0", tf.now(), "site-a")

	resp, err := tf.ImportReport(tf.ctx, "", rep, audit)
	if err != nil {
		t.Fatal(err)
	}
	if resp.New != 1 || resp.Events != 2 || resp.InstalledVersion != "2.0.0" {
		t.Fatalf("import: %+v", resp)
	}
	site, _ := tf.Site(tf.ctx, "site-a")
	if site.InstalledVersion != "2.0.0" {
		t.Errorf("installed %q", site.InstalledVersion)
	}
	h, err := tf.History(tf.ctx, "site-a", "", 10)
	if err != nil || len(h.Jobs) != 1 || h.Jobs[0].Result != protocol.ResultSucceeded || h.Jobs[0].From != "1.0.0" || h.Jobs[0].CreatedBy != "offline" {
		t.Fatalf("history: %+v %v", h.Jobs, err)
	}
	if evs, err := tf.JobEvents(tf.ctx, "offline-1"); err != nil || len(evs) != 2 || evs[1].State != protocol.StateCommitted {
		t.Fatalf("events: %+v %v", evs, err)
	}
	// Again, by support or by the agent itself: nothing new.
	if resp, err := tf.ImportReport(tf.ctx, "", rep, audit); err != nil || resp.New != 0 || resp.Events != 0 {
		t.Errorf("second import: %+v %v", resp, err)
	}
	if resp, err := tf.ImportReport(tf.ctx, "site-a", rep, nil); err != nil || resp.New != 0 {
		t.Errorf("the agent's own delivery after the import: %+v %v", resp, err)
	}

	// What whoever carries the file could try.
	tampered := bytes.Replace(rep, []byte(`"installed_version": "2.0.0"`), []byte(`"installed_version": "1.9.0"`), 1)
	_, err = tf.ImportReport(tf.ctx, "", tampered, audit)
	wantFault(t, err, fault.Forbidden, "signature")
	_, err = tf.ImportReport(tf.ctx, "", tf.offlineReport("site-a", "offline-2", "2.0.0", "3.0.0", tf.now(), "site-b"), audit)
	wantFault(t, err, fault.Forbidden, "signature")
	_, err = tf.ImportReport(tf.ctx, "site-b", rep, nil)
	wantFault(t, err, fault.Forbidden, "site site-a")
	// Site B's agent reusing site A's job ID.
	_, err = tf.ImportReport(tf.ctx, "", tf.offlineReport("site-b", "offline-1", "1.0.0", "2.0.0", tf.now(), "site-b"), audit)
	wantFault(t, err, fault.Forbidden, "another site")
	unsigned, _ := airgap.Sign(airgap.Report{Site: "site-a", Client: "acme", Product: "acme-erp", WrittenAt: tf.now(),
		Jobs: []airgap.ReportJob{{ID: "offline-3", To: "9.0.0", Result: protocol.ResultSucceeded, Events: []protocol.Event{{JobID: "offline-3", Seq: 1, State: protocol.StateCommitted, At: tf.now()}}}}}, "")
	_, err = tf.ImportReport(tf.ctx, "", unsigned, audit)
	wantFault(t, err, fault.Forbidden, "not signed")
	_, err = tf.ImportReport(tf.ctx, "", []byte(`{"report":{"format":1}}`), audit)
	wantFault(t, err, fault.Invalid, "")
	if site, _ := tf.Site(tf.ctx, "site-a"); site.InstalledVersion != "2.0.0" {
		t.Errorf("a refused report changed the installed version: %q", site.InstalledVersion)
	}

	// An older report imported late: its job joins the history, the
	// installed version stays the newer news.
	older := tf.offlineReport("site-a", "offline-0", "0.9.0", "1.0.0", tf.now().Add(-30*time.Minute), "site-a")
	if resp, err := tf.ImportReport(tf.ctx, "", older, audit); err != nil || resp.New != 1 || resp.InstalledVersion != "2.0.0" {
		t.Errorf("older report: %+v %v", resp, err)
	}
	// A report written before the site's last check-in: history only.
	tf.advance(time.Minute)
	tf.checkin("site-a", protocol.CheckinRequest{InstalledVersion: "2.0.0", State: protocol.StateIdle})
	stale := tf.offlineReport("site-a", "offline-5", "2.0.0", "2.1.0", tf.now().Add(-time.Second), "site-a")
	if resp, err := tf.ImportReport(tf.ctx, "", stale, audit); err != nil || resp.New != 1 || resp.InstalledVersion != "2.0.0" {
		t.Errorf("report older than a check-in: %+v %v", resp, err)
	}
}
