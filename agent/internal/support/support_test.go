package support

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/dropless/dropless/agent/internal/appctl"
	"github.com/dropless/dropless/agent/internal/config"
	"github.com/dropless/dropless/agent/internal/engine"
	"github.com/dropless/dropless/agent/internal/runner"
)

// The secrets a site's files hold; none may be in a bundle.
var secrets = []string{"dle_ENROLLSECRET123", "PgPassw0rdSecret", "dlc_CREDENTIALSECRET", "tok_UNKNOWNSECRET", "kvPassSecret"}

const goodConfig = `server       = "http://127.0.0.1:1"
site         = "acme-prod"
client       = "acme"
product      = "acme-erp"
enroll_token = "dle_ENROLLSECRET123"  # used once
root_sha256  = "e23a3cd567c140d6fae811060cbd5c6fa92c43f172415374432ebd926aa1d77e"
install_dir  = "INSTALL"
data_dir     = "DATA"

[app]
start = ["sh", "-c", "true"]
stop  = ["sh", "-c", "true"]
health_cmd = ["true"]

[database]
driver = "postgres"
dsn    = "postgres://app:PgPassw0rdSecret@db.example:5432/app?sslmode=disable"

[[data]]
path = "UPLOADS"
`

// site makes an agent's directories with a journal holding one job,
// the agent's credential, and a log; the engine stays open (holding its
// lock) as a running agent would. It returns the config's path.
func site(t *testing.T, cfgText string) (cfgPath, logPath string) {
	t.Helper()
	dir := t.TempDir()
	install, data := filepath.Join(dir, "install"), filepath.Join(dir, "data")
	cfgText = strings.NewReplacer("INSTALL", install, "DATA", data, "UPLOADS", filepath.Join(dir, "uploads")).Replace(cfgText)
	cfgPath = filepath.Join(dir, "agent.toml")
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(install, 0o755); err != nil {
		t.Fatal(err)
	}
	app, err := appctl.New(config.App{Start: []string{"true"}, Stop: []string{"true"}, HealthCmd: []string{"true"},
		HealthTimeout: config.Duration{Duration: time.Second}, CommandTimeout: config.Duration{Duration: time.Second}}, install, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	e, err := engine.Open(context.Background(), engine.Config{Product: "acme-erp", InstallDir: install, DataDir: data, App: app})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	// A job as the engine journals one (see engine/journal.go's schema).
	db, err := sql.Open("sqlite", "file:"+filepath.Join(data, engine.JournalName)+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC).UnixNano()
	for _, q := range []string{
		`INSERT INTO jobs (id, product, from_version, to_version, target, state, result, reason, seq, created_at, updated_at, ended_at)
		 VALUES ('job-42', 'acme-erp', '1.0.0', '1.1.0', 'acme-erp/1.1.0.tar.gz', 14, 'rolled_back', 'health check failed: 503', 3, ?, ?, ?)`,
		`INSERT INTO events (job_id, seq, state, message, at) VALUES ('job-42', 1, 2, 'downloading acme-erp/1.1.0.tar.gz', ?)`,
		`INSERT INTO events (job_id, seq, state, message, at) VALUES ('job-42', 2, 13, 'health check failed: 503', ?)`,
		`INSERT INTO events (job_id, seq, state, message, at) VALUES ('job-42', 3, 14, 'back on 1.0.0: it runs and passed its health check', ?)`,
		`INSERT INTO site (key, value) VALUES ('drift', '["modified: bin/app.dll"]')`,
	} {
		if _, err := db.Exec(q, now, now, now); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := os.WriteFile(filepath.Join(data, runner.CredentialFile), []byte("dlc_CREDENTIALSECRET\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	logPath = filepath.Join(dir, "updateagent.log")
	log := "level=INFO msg=enrolling token=dle_ENROLLSECRET123\n" +
		"level=INFO msg=checkin header=\"Authorization: Bearer dlc_CREDENTIALSECRET\"\n" +
		"level=WARN msg=\"database unreachable\" dsn=\"host=db user=app password=kvPassSecret dbname=app\"\n" +
		"level=INFO msg=\"job job-42 rolled_back\"\n"
	if err := os.WriteFile(logPath, []byte(log), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfgPath, logPath
}

// readBundle returns the bundle's files by name (without the top
// directory).
func readBundle(t *testing.T, b []byte) map[string]string {
	t.Helper()
	gz, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	files := map[string]string{}
	top := ""
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		dir, name, ok := strings.Cut(h.Name, "/")
		if !ok || (top != "" && dir != top) {
			t.Fatalf("entry %q is not inside one top directory", h.Name)
		}
		top = dir
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[name] = string(data)
	}
	if !strings.HasPrefix(top, "updateagent-support-acme-prod-") {
		t.Errorf("top directory %q", top)
	}
	return files
}

func statusOf(cfg *config.Config) ([]byte, error) {
	st, err := engine.ReadStatus(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	return json.Marshal(st)
}

// TestBundle: every part is there, with what support needs, while the
// agent holds its journal open, and no secret of the site is anywhere in
// it: not in the config, the logs or anything else; with a config that
// loads and with one that does not.
func TestBundle(t *testing.T) {
	tests := []struct {
		name, config string
		wantMissing  string
	}{
		{"valid config", goodConfig, ""},
		{"config that does not load", strings.Replace(goodConfig, "[app]", "api_token = \"tok_UNKNOWNSECRET\"\n[app]", 1), "the config does not load"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfgPath, logPath := site(t, tt.config)
			var buf bytes.Buffer
			sum, err := Write(context.Background(), &buf, Options{ConfigPath: cfgPath, Status: statusOf, LogFiles: []string{logPath}, ServiceName: "updateagent-test-none"})
			if err != nil {
				t.Fatal(err)
			}
			files := readBundle(t, buf.Bytes())
			for _, want := range []string{"README.txt", "config.toml", "status.json", "history.txt", "history.json", "drift.txt", "facts.json", "logs/updateagent.log"} {
				if _, ok := files[want]; !ok {
					t.Errorf("no %s in the bundle (it has %v)", want, sum.Files)
				}
			}
			for name, content := range files {
				for _, s := range secrets {
					if strings.Contains(content, s) {
						t.Errorf("%s holds the secret %q:\n%s", name, s, content)
					}
				}
			}
			mustHave := map[string][]string{
				"config.toml":          {`site         = "acme-prod"`, `enroll_token = "` + Redacted + `"`, "postgres://app:" + Redacted + "@db.example:5432/app", "# used once"},
				"history.txt":          {"job job-42: acme-erp 1.0.0 -> 1.1.0: rolled_back", "reason: health check failed: 503", "back on 1.0.0"},
				"history.json":         {`"job_id": "job-42"`, `"events"`},
				"drift.txt":            {"modified: bin/app.dll"},
				"status.json":          {`"installed_version"`},
				"facts.json":           {`"what": "data_dir"`, `"what": "data[0]"`, `"free_bytes"`, `"os": "`},
				"logs/updateagent.log": {"job job-42 rolled_back", "Bearer " + Redacted},
			}
			for name, wants := range mustHave {
				for _, w := range wants {
					if !strings.Contains(files[name], w) {
						t.Errorf("%s does not hold %q:\n%s", name, w, files[name])
					}
				}
			}
			if tt.wantMissing != "" && !strings.Contains(files["README.txt"], tt.wantMissing) {
				t.Errorf("README.txt does not say %q:\n%s", tt.wantMissing, files["README.txt"])
			}
		})
	}
}

// TestRedact covers the secret shapes a config or a log line may hold.
func TestRedact(t *testing.T) {
	r := redactor{}
	r.addDSN("host=db user=app password='kv secret' dbname=app")
	tests := []struct{ in, want string }{
		{`enroll_token = "dle_x"`, `enroll_token = "[redacted]"`},
		{`"client_secret" = "abc"`, `"client_secret" = "[redacted]"`},
		{`#enroll_token = "dle_commented_out"  # old one`, `#enroll_token = "[redacted]"  # old one`},
		{`dsn = "postgresql://u:p%40ss@h/db"`, `dsn = "postgresql://u:[redacted]@h/db"`},
		{`dsn = "host=db password=xyz sslmode=disable"`, `dsn = "host=db password=[redacted] sslmode=disable"`},
		{`dsn = "file:/a.db?_auth_pass=xyz&x=1"`, `dsn = "file:/a.db?_auth_pass=[redacted]&x=1"`},
		{`msg="kv secret leaked"`, `msg="[redacted] leaked"`},
		{`root_sha256 = "e23a"`, `root_sha256 = "e23a"`},
	}
	for _, tt := range tests {
		if got := r.config(tt.in); got != tt.want {
			t.Errorf("config(%s) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

// FuzzRedact: whatever a config holds, a value given as a secret never
// survives redaction.
func FuzzRedact(f *testing.F) {
	f.Add("enroll_token = \"SECRETVALUE\"\n", "SECRETVALUE")
	f.Add("dsn = \"postgres://u:SECRETVALUE@h/db\"", "SECRETVALUE")
	f.Add("x = 1\n# SECRETVALUE\n", "SECRETVALUE")
	f.Fuzz(func(t *testing.T, text, secret string) {
		r := redactor{}
		r.add(secret)
		if len(r.values) == 0 {
			return
		}
		got := r.config(text)
		// The redaction marker itself may hold a short secret.
		if strings.Contains(strings.ReplaceAll(got, Redacted, ""), r.values[0]) && !strings.Contains(Redacted, r.values[0]) {
			t.Errorf("config(%q) = %q still holds %q", text, got, r.values[0])
		}
	})
}
