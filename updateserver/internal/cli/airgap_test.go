package cli_test

import (
	"archive/tar"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/airgap"
	"github.com/dropless/dropless/pkg/protocol"
)

// TestOfflineExportAndImport: offline export plans the hops from --from
// and writes the metadata and exactly those bundles; sites import-report
// (support) takes a report signed by the site's agent, once, and refuses
// one that was changed. Every request and answer is checked against the
// API description.
func TestOfflineExportAndImport(t *testing.T) {
	s := startServer(t)
	s.publish(t, "1.0.0", "")
	s.publish(t, "1.1.0", ">= 1.0, < 1.1")
	s.publish(t, "2.0.0", ">= 1.1")
	viewer := s.newToken(protocol.RoleViewer)
	support := s.newToken(protocol.RoleSupport)

	file := filepath.Join(t.TempDir(), "x.airgap")
	out := s.mustCLI(viewer, "offline", "export", "--product", "acme-erp", "--version", "2.0.0", "--from", "1.0.0", "--out", file)
	if !strings.Contains(out, "hops 1.1.0 -> 2.0.0") {
		t.Errorf("export said %q", out)
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var names []string
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
	all := strings.Join(names, " ")
	if names[0] != airgap.ManifestName || !strings.Contains(all, "metadata/1.root.json") || !strings.Contains(all, "metadata/timestamp.json") ||
		!strings.Contains(all, "acme-erp-1.1.0.tar.gz") || !strings.Contains(all, "acme-erp-2.0.0.tar.gz") || strings.Contains(all, "acme-erp-1.0.0.tar.gz") {
		t.Errorf("entries: %v", names)
	}
	if r := s.cli(viewer, "offline", "export", "--product", "acme-erp", "--version", "9.9.9", "--out", file); r.code != 1 || !strings.Contains(r.stderr, "not published") {
		t.Errorf("unknown version: %+v", r)
	}
	if r := s.cli(viewer, "offline", "export", "--product", "acme-erp", "--version", "2.0.0"); r.code != 2 {
		t.Errorf("no --out: %+v", r)
	}

	tok := strings.TrimSpace(s.mustCLI(support, "enroll-token", "create", "--client", "acme"))
	agent := s.enroll(t, tok, "site-a", "acme")
	if _, err := agent.Checkin(context.Background(), protocol.CheckinRequest{InstalledVersion: "1.0.0", State: protocol.StateIdle}, 0); err != nil {
		t.Fatal(err)
	}
	at := time.Now().UTC().Add(time.Second)
	id := airgap.JobIDPrefix + "cli"
	b, err := airgap.Sign(airgap.Report{Site: "site-a", Client: "acme", Product: "acme-erp", InstalledVersion: "1.1.0", WrittenAt: at,
		Jobs: []airgap.ReportJob{{ID: id, From: "1.0.0", To: "1.1.0", Target: "acme-erp/acme-erp-1.1.0.tar.gz", Result: protocol.ResultSucceeded,
			Events: []protocol.Event{{JobID: id, Seq: 1, State: protocol.StateCommitted, Message: "ok", At: at}}}}}, airgap.CredentialKey(agent.Credential))
	if err != nil {
		t.Fatal(err)
	}
	report := filepath.Join(t.TempDir(), "report.json")
	os.WriteFile(report, b, 0o600)
	if r := s.cli(viewer, "sites", "import-report", report); r.code != 1 {
		t.Errorf("a viewer imported a report: %+v", r)
	}
	out = s.mustCLI(support, "sites", "import-report", report)
	if !strings.Contains(out, "1 jobs (1 new)") || !strings.Contains(out, "installed: 1.1.0") {
		t.Errorf("import said %q", out)
	}
	var resp protocol.ImportReportResponse
	json.Unmarshal([]byte(s.mustCLI(support, "sites", "import-report", report, "--json")), &resp)
	if resp.New != 0 || resp.Events != 0 {
		t.Errorf("second import: %+v", resp)
	}
	if v := s.site(t, support, "site-a").InstalledVersion; v != "1.1.0" {
		t.Errorf("installed %q", v)
	}
	tampered := filepath.Join(t.TempDir(), "tampered.json")
	os.WriteFile(tampered, []byte(strings.Replace(string(b), `"installed_version": "1.1.0"`, `"installed_version": "2.0.0"`, 1)), 0o600)
	if r := s.cli(support, "sites", "import-report", tampered); r.code != 1 || !strings.Contains(r.stderr, "signature") {
		t.Errorf("tampered report: %+v", r)
	}
}
