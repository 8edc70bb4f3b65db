//go:build e2e && unix

package testenv

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/pkg/tlstrust/tlstest"
)

// TestTLS: with a CA made for the test, the server serves HTTPS only; an
// agent given the CA as ca_file enrolls, checks in and upgrades, and the
// CLI given it as UPDATESERVER_CA_FILE or --ca-file works. Without the CA,
// or against a server presenting a certificate of another CA, the CLI and
// the agent refuse with an error that names the certificate problem; and
// an agent refuses plain http:// to a host that is not loopback unless
// allow_insecure_http is set.
func TestTLS(t *testing.T) {
	t.Parallel()
	ca := tlstest.NewCA(t, "dropless test CA")
	certDir := t.TempDir()
	certFile, keyFile := filepath.Join(certDir, "server.pem"), filepath.Join(certDir, "server.key")
	ca.Issue().InstallAt(t, certFile, keyFile)
	env := New(t, TLS(certFile, keyFile, ca.File))
	if !strings.HasPrefix(env.URL, "https://") {
		t.Fatalf("server URL %s", env.URL)
	}
	if log, _ := os.ReadFile(filepath.Join(env.Dir, "server.log")); !strings.Contains(string(log), "addr=https://") {
		t.Errorf("the server's log does not give its https:// address:\n%s", log)
	}
	// Plain HTTP on the same port gets no API.
	if _, errs, code := env.CLI("sites", "list", "--server", "http://"+strings.TrimPrefix(env.URL, "https://")); code != 1 || !strings.Contains(errs, "speaks HTTPS") {
		t.Errorf("CLI over plain http: exit %d %q", code, errs)
	}

	// The agent with ca_file, and the CLI with UPDATESERVER_CA_FILE (env.CLI).
	env.Publish(t, "1.0.0", Healthy)
	env.Publish(t, "1.1.0", Healthy)
	site := env.NewSite(t, "tls-site", "acme")
	site.Upgrade(t, "1.0.0")
	site.AwaitHealthy(t, "1.0.0")
	site.Upgrade(t, "1.1.0")
	site.AwaitHealthy(t, "1.1.0")
	if j := site.AwaitJob(t); j.Result != protocol.ResultSucceeded || j.From != "1.0.0" {
		t.Fatalf("upgrade over TLS: %+v", j)
	}

	// The CLI with --ca-file, and without the CA.
	cli := func(args ...string) (string, int) {
		cmd := exec.Command(env.Bin.Server, args...)
		cmd.Env = append(os.Environ(), "UPDATESERVER_URL="+env.URL, "UPDATESERVER_TOKEN="+env.Admin, "UPDATESERVER_CA_FILE=")
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return string(out), ee.ExitCode()
		}
		return string(out), 0
	}
	if out, code := cli("sites", "list", "--ca-file", ca.File); code != 0 || !strings.Contains(out, "tls-site") {
		t.Errorf("CLI with --ca-file: exit %d\n%s", code, out)
	}
	untrusted := "the update server's TLS certificate is not trusted (x509: certificate signed by unknown authority): pass --ca-file with the CA that signed it (or set UPDATESERVER_CA_FILE)"
	if out, code := cli("sites", "list"); code != 1 || !strings.Contains(out, untrusted) {
		t.Errorf("CLI without the CA: exit %d %q", code, out)
	}

	// An agent without ca_file does not enroll, and its log says why.
	noCA := env.PrepareSite(t, "no-ca", "acme")
	rewriteConfig(t, noCA, func(cfg string) string {
		return regexp.MustCompile(`(?m)^ca_file = .*$`).ReplaceAllString(cfg, "")
	})
	noCA.StartAgent(t)
	awaitLog(t, noCA, "the server's TLS certificate is not trusted (x509: certificate signed by unknown authority): set ca_file to the CA that signed it")
	noCA.StopAgent(t)
	if st := noCA.Info(t); st.LastSeen != nil {
		t.Errorf("the agent without the CA reached the server: %+v", st)
	}

	// A ca_file that is not a certificate: the agent does not start.
	badCA := env.PrepareSite(t, "bad-ca", "acme")
	notPEM := filepath.Join(badCA.Dir, "ca.txt")
	os.WriteFile(notPEM, []byte("not a certificate\n"), 0o644)
	rewriteConfig(t, badCA, func(cfg string) string {
		return regexp.MustCompile(`(?m)^ca_file = .*$`).ReplaceAllString(cfg, "ca_file = \""+notPEM+"\"")
	})
	badCA.StartAgent(t)
	if code := badCA.Agent().Wait(t, time.Minute); code == 0 {
		t.Errorf("the agent with a bad ca_file exited 0")
	}
	if log := readLog(badCA); !strings.Contains(log, "ca_file: "+notPEM+" holds no PEM certificate") {
		t.Errorf("the agent's log does not name the bad ca_file:\n%s", log)
	}

	// Plain http:// to a host that is not loopback: refused at start, then
	// allowed with a warning at every start.
	plain := env.PrepareSite(t, "plain", "acme")
	rewriteConfig(t, plain, func(cfg string) string {
		return regexp.MustCompile(`(?m)^server = .*$`).ReplaceAllString(cfg, `server = "http://10.255.255.1:8080"`)
	})
	plain.StartAgent(t)
	if code := plain.Agent().Wait(t, time.Minute); code == 0 {
		t.Errorf("the agent talking plain http to 10.255.255.1 exited 0")
	}
	if log := readLog(plain); !strings.Contains(log, "set allow_insecure_http = true") {
		t.Errorf("the refusal does not name allow_insecure_http:\n%s", log)
	}
	rewriteConfig(t, plain, func(cfg string) string { return "allow_insecure_http = true\n" + cfg })
	plain.StartAgent(t)
	awaitLog(t, plain, "allow_insecure_http = true: talking plain http:// to a server that is not on loopback")
	plain.StopAgent(t)

	// The server now presents a certificate of another CA (the files
	// replaced; a restart drops the agent's open connection). The agent's
	// check-ins and the CLI refuse it.
	tlstest.NewCA(t, "another CA").Issue().InstallAt(t, certFile, keyFile)
	env.StopServer(t)
	env.StartServer(t)
	t.Log("server restarted with another CA")
	if out, code := cli("sites", "list", "--ca-file", ca.File); code != 1 || !strings.Contains(out, "the update server's TLS certificate is not trusted") {
		t.Errorf("CLI against another CA's certificate: exit %d %q", code, out)
	}
	Await(t, "the agent's status names the untrusted certificate", func() bool {
		out, err := exec.Command(env.Bin.Agent, "status", "--config", site.Config, "--json").Output()
		if err != nil {
			t.Fatalf("updateagent status --json: %v", err)
		}
		var st map[string]any
		if err := json.Unmarshal(out, &st); err != nil {
			t.Fatalf("status --json: %v\n%s", err, out)
		}
		return anyContains(st, "the server's TLS certificate is not trusted") && anyContains(st, "set ca_file to the CA that signed it")
	})
}

// rewriteConfig edits a site's agent config.
func rewriteConfig(t *testing.T, s *Site, edit func(string) string) {
	t.Helper()
	b, err := os.ReadFile(s.Config)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.Config, []byte(edit(string(b))), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readLog(s *Site) string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "agent.log"))
	return string(b)
}

func awaitLog(t *testing.T, s *Site, want string) {
	t.Helper()
	Await(t, "agent "+s.Name+" logs "+want, func() bool { return strings.Contains(readLog(s), want) })
}

// anyContains reports whether a string anywhere in v contains want.
func anyContains(v any, want string) bool {
	switch v := v.(type) {
	case string:
		return strings.Contains(v, want)
	case map[string]any:
		for _, x := range v {
			if anyContains(x, want) {
				return true
			}
		}
	case []any:
		for _, x := range v {
			if anyContains(x, want) {
				return true
			}
		}
	}
	return false
}
