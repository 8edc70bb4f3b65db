package config

import (
	"strings"
	"testing"
	"time"
)

const valid = `
server       = "http://127.0.0.1:8080/"
site         = "acme-prod"
client       = "acme"
product      = "acme-erp"
enroll_token = "dle_x"
root_sha256  = "` + "e23a3cd567c140d6fae811060cbd5c6fa92c43f172415374432ebd926aa1d77e" + `"
install_dir  = "/opt/acme-erp"
data_dir     = "/var/lib/updateagent"

[app]
start = ["sh", "-c", "start"]
stop  = ["sh", "-c", "stop"]
health_url = "http://127.0.0.1:9000/health"
`

func TestParseValid(t *testing.T) {
	c, err := Parse([]byte(valid))
	if err != nil {
		t.Fatal(err)
	}
	if c.Server != "http://127.0.0.1:8080" || c.MetadataURL != "http://127.0.0.1:8080/tuf/metadata/" || c.TargetsURL != "http://127.0.0.1:8080/tuf/targets/" {
		t.Errorf("urls: %q %q %q", c.Server, c.MetadataURL, c.TargetsURL)
	}
	if c.PollInterval.Duration != 30*time.Second || c.App.HealthTimeout.Duration != 30*time.Second || c.KeepReleases != 3 || c.SelfUpdateTrial.Duration != 2*time.Minute {
		t.Errorf("defaults: %+v", c)
	}
	c, err = Parse([]byte(strings.Replace(valid, "[app]", "drift_ignore = [\"*.log\", \"logs/\"]\n\n[database]\ndriver = \"sqlite\"\ndsn = \"/opt/acme-erp/data/app.db\"\n\n[app]", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.DriftIgnore) != 2 || c.Database == nil || c.Database.Driver != "sqlite" || c.Database.SchemaDrift != SchemaDriftBlock || c.Database.BackupVerify != BackupVerifyChecksum {
		t.Errorf("drift_ignore %q, database %+v", c.DriftIgnore, c.Database)
	}
}

// TestServers: servers = [...] lists replicas; server is the first, and
// the TUF repository follows the server in use unless a mirror is set.
func TestServers(t *testing.T) {
	in := strings.Replace(valid, `server       = "http://127.0.0.1:8080/"`, `servers = ["http://127.0.0.1:8080/", "http://127.0.0.1:8081"]`, 1)
	c, err := Parse([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if c.Server != "http://127.0.0.1:8080" || strings.Join(c.ServerURLs(), " ") != "http://127.0.0.1:8080 http://127.0.0.1:8081" || !c.TUFFollowsServer() {
		t.Errorf("server %q, servers %q, TUF follows %t", c.Server, c.ServerURLs(), c.TUFFollowsServer())
	}
	c, err = Parse([]byte(strings.Replace(in, "[app]", "metadata_url = \"https://mirror.example.com/metadata/\"\n[app]", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if c.TUFFollowsServer() {
		t.Error("with a mirror set the TUF repository still follows the server")
	}
	c, err = Parse([]byte(valid))
	if err != nil || strings.Join(c.ServerURLs(), " ") != "http://127.0.0.1:8080" || c.TUFFollowsServer() {
		t.Errorf("one server: %q, %v", c.ServerURLs(), err)
	}
}

func TestParseErrorsNameTheKey(t *testing.T) {
	tests := []struct {
		name, replace, with, wantErr string
	}{
		{"unknown key", `site         = "acme-prod"`, `site = "acme-prod"` + "\nsiet = 1", `unknown key "siet"`},
		{"bad server", `"http://127.0.0.1:8080/"`, `"ftp://x"`, "server"},
		{"missing site", `site         = "acme-prod"`, ``, "site: missing"},
		{"bad site", `"acme-prod"`, `"Acme Prod"`, "site"},
		{"bad pin", `e23a3cd567c140d6fae811060cbd5c6fa92c43f172415374432ebd926aa1d77e`, `abc`, "root_sha256"},
		{"relative install_dir", `"/opt/acme-erp"`, `"opt/acme-erp"`, "install_dir"},
		{"same dirs", `"/var/lib/updateagent"`, `"/opt/acme-erp"`, "data_dir"},
		{"bad duration", `data_dir     = "/var/lib/updateagent"`, `data_dir = "/var/lib/updateagent"` + "\npoll_interval = \"soon\"", "soon"},
		{"no health", `health_url = "http://127.0.0.1:9000/health"`, ``, "health_url"},
		{"service and commands", `[app]`, "[app]\nservice = \"acme\"", "either service or start"},
		{"bad driver", `[app]`, "[database]\ndriver = \"oracle\"\ndsn = \"x\"\n[app]", "database.driver"},
		{"bad backup_verify", `[app]`, "[database]\ndriver = \"sqlite\"\ndsn = \"x\"\nbackup_verify = \"rows\"\n[app]", "database.backup_verify"},
		{"bad schema_drift", `[app]`, "[database]\ndriver = \"sqlite\"\ndsn = \"x\"\nschema_drift = \"warn\"\n[app]", "database.schema_drift"},
		{"not toml", `[app]`, `[app`, "toml"},
		{"plain http to another host", `"http://127.0.0.1:8080/"`, `"http://updates.example.com"`, "allow_insecure_http"},
		{"relative ca_file", `[app]`, "ca_file = \"ca.pem\"\n[app]", "ca_file"},
		{"bad drift_ignore", `[app]`, "drift_ignore = [\"[a-\"]\n[app]", "drift_ignore"},
		{"short self_update_trial", `[app]`, "self_update_trial = \"1s\"\n[app]", "self_update_trial"},
		{"server and servers", `[app]`, "servers = [\"http://127.0.0.1:8081\"]\n[app]", "server and servers"},
		{"a bad one of servers", `server       = "http://127.0.0.1:8080/"`, `servers = ["http://127.0.0.1:8080", "ftp://x"]`, `server "ftp://x"`},
		{"plain http to another replica", `server       = "http://127.0.0.1:8080/"`, `servers = ["http://127.0.0.1:8080", "http://b.example.com"]`, "allow_insecure_http"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := strings.Replace(valid, tt.replace, tt.with, 1)
			_, err := Parse([]byte(in))
			if err == nil || !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(tt.wantErr)) {
				t.Fatalf("err = %v, want it to name %q", err, tt.wantErr)
			}
		})
	}
}

func TestInsecureHTTP(t *testing.T) {
	tests := []struct {
		server       string
		allow        bool
		wantInsecure bool
		wantErr      bool
	}{
		{"http://127.0.0.1:8080", false, false, false},
		{"http://localhost:8080", false, false, false},
		{"http://[::1]:8080", false, false, false},
		{"https://updates.example.com", false, false, false},
		{"http://updates.example.com", false, true, true},
		{"http://10.0.0.5:8080", false, true, true},
		{"http://updates.example.com", true, true, false},
	}
	for _, tt := range tests {
		in := strings.Replace(valid, `"http://127.0.0.1:8080/"`, `"`+tt.server+`"`, 1)
		if tt.allow {
			in = strings.Replace(in, "[app]", "allow_insecure_http = true\n[app]", 1)
		}
		c, err := Parse([]byte(in))
		if (err != nil) != tt.wantErr {
			t.Errorf("%s allow=%v: err = %v, want error %v", tt.server, tt.allow, err, tt.wantErr)
			continue
		}
		if err == nil && c.InsecureHTTP() != tt.wantInsecure {
			t.Errorf("%s: InsecureHTTP = %v, want %v", tt.server, c.InsecureHTTP(), tt.wantInsecure)
		}
	}
}

// DefaultPath is the packaged config's path, where status looks without
// --config.
func TestDefaultPath(t *testing.T) {
	tests := []struct {
		goos, programData, want string
	}{
		{"linux", "", "/etc/updateagent/agent.toml"},
		{"darwin", "", "/etc/updateagent/agent.toml"},
		{"windows", `D:\ProgramData`, `D:\ProgramData\updateagent\agent.toml`},
		{"windows", `D:\ProgramData\`, `D:\ProgramData\updateagent\agent.toml`},
		{"windows", "", `C:\ProgramData\updateagent\agent.toml`},
	}
	for _, tt := range tests {
		if got := defaultPath(tt.goos, tt.programData); got != tt.want {
			t.Errorf("defaultPath(%s, %q) = %q, want %q", tt.goos, tt.programData, got, tt.want)
		}
	}
}

// [[data]] paths: the contract's example (a directory inside install_dir,
// beside releases/) is valid; anything the agent manages itself, or that
// overlaps another path or the SQLite database, is refused naming the key.
func TestDataPaths(t *testing.T) {
	db := "[database]\ndriver = \"sqlite\"\ndsn = \"file:/opt/acme-erp/data/app.db?_pragma=foreign_keys(1)\"\n"
	tests := []struct {
		name, data, wantErr string
	}{
		{"contract example", `["/opt/acme-erp/storage"]`, ""},
		{"several", `["/srv/uploads", "/opt/acme-erp/data/aux.db", "/opt/acme-erp/storage"]`, ""},
		{"relative", `["storage"]`, "data[0].path \"storage\": must be an absolute path"},
		{"empty", `[""]`, "data[0].path: missing"},
		{"root", `["/"]`, "root of a file system"},
		{"holds install_dir", `["/opt"]`, "holds install_dir"},
		{"is install_dir", `["/opt/acme-erp"]`, "holds install_dir"},
		{"inside releases", `["/opt/acme-erp/releases/1.0.0/uploads"]`, "releases/"},
		{"current", `["/opt/acme-erp/current/uploads"]`, "current"},
		{"data_dir", `["/var/lib/updateagent/x"]`, "data_dir"},
		{"holds data_dir", `["/var/lib"]`, "data_dir"},
		{"database file", `["/opt/acme-erp/data/app.db"]`, "[database] file"},
		{"database dir", `["/opt/acme-erp/data"]`, "[database] file"},
		{"duplicate", `["/srv/uploads", "/srv/uploads/"]`, "data[1].path \"/srv/uploads/\" overlaps data[0].path"},
		{"nested", `["/srv/uploads/a", "/srv/uploads"]`, "overlaps data[0].path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var paths []string
			for p := range strings.SplitSeq(strings.Trim(tt.data, "[]"), ", ") {
				paths = append(paths, "[[data]]\npath = "+p+"\n")
			}
			in := valid + db + strings.Join(paths, "")
			c, err := Parse([]byte(in))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if len(c.Data) != len(paths) {
					t.Errorf("Data = %+v", c.Data)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want it to say %q", err, tt.wantErr)
			}
		})
	}
}
