package cli_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/dropless/dropless/pkg/tlstrust/tlstest"
	"github.com/dropless/dropless/updateserver/internal/daemon"
)

// TestCLIOverTLS: the operator commands reach an HTTPS server whose
// certificate a private CA signed when given that CA (--ca-file or
// UPDATESERVER_CA_FILE), and otherwise refuse with one sentence that
// names the certificate problem and what to do.
func TestCLIOverTLS(t *testing.T) {
	ca := tlstest.NewCA(t, "test CA")
	pair := ca.Issue()
	s := startServer(t, func(c *daemon.Config) { c.TLSCert, c.TLSKey = pair.CertFile, pair.KeyFile })
	if !strings.HasPrefix(s.URL, "https://") {
		t.Fatalf("URL %s", s.URL)
	}
	other := tlstest.NewCA(t, "another CA")
	httpURL := "http://" + strings.TrimPrefix(s.URL, "https://")
	localhost := strings.Replace(s.URL, "127.0.0.1", "localhost", 1)
	base := map[string]string{"UPDATESERVER_URL": s.URL, "UPDATESERVER_TOKEN": s.Admin}
	with := func(kv ...string) map[string]string {
		env := map[string]string{}
		for k, v := range base {
			env[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			env[kv[i]] = kv[i+1]
		}
		return env
	}
	tests := []struct {
		name     string
		env      map[string]string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"--ca-file", base, []string{"sites", "list", "--ca-file", ca.File}, 0, ""},
		{"UPDATESERVER_CA_FILE", with("UPDATESERVER_CA_FILE", ca.File), []string{"release", "list"}, 0, ""},
		{"localhost is in the certificate", with("UPDATESERVER_URL", localhost), []string{"sites", "list", "--ca-file", ca.File}, 0, ""},
		{"no CA", base, []string{"sites", "list"}, 1,
			"the update server's TLS certificate is not trusted (x509: certificate signed by unknown authority): pass --ca-file with the CA that signed it (or set UPDATESERVER_CA_FILE)"},
		{"another CA", with("UPDATESERVER_CA_FILE", other.File), []string{"release", "list"}, 1, "TLS certificate is not trusted"},
		{"plain http to the https server", with("UPDATESERVER_CA_FILE", ca.File), []string{"sites", "list", "--server", httpURL}, 1,
			"the update server speaks HTTPS: use https:// in --server"},
		{"CA file missing", base, []string{"sites", "list", "--ca-file", filepath.Join(t.TempDir(), "nope.pem")}, 1, "nope.pem: no such file"},
		{"CA file not PEM", base, []string{"sites", "list", "--ca-file", pair.KeyFile}, 1, "holds no PEM certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := s.cliEnv(tt.env, tt.args...)
			if r.code != tt.wantCode || !strings.Contains(r.stderr, tt.wantErr) {
				t.Fatalf("updateserver %s: exit %d, stderr %q; want %d with %q", strings.Join(tt.args, " "), r.code, r.stderr, tt.wantCode, tt.wantErr)
			}
			if strings.Count(strings.TrimSpace(r.stderr), "\n") > 0 {
				t.Errorf("error is more than one line: %q", r.stderr)
			}
		})
	}
}

// TestServeTLSUsage: --tls-cert and --tls-key go together.
func TestServeTLSUsage(t *testing.T) {
	s := &server{t: t}
	data := filepath.Join(t.TempDir(), "data")
	for _, args := range [][]string{
		{"serve", "--data", data, "--listen", "127.0.0.1:0", "--tls-cert", "server.pem"},
		{"serve", "--data", data, "--listen", "127.0.0.1:0", "--tls-key", "server.key"},
	} {
		r := s.cliEnv(nil, args...)
		if r.code != 2 || !strings.Contains(r.stderr, "--tls-cert and --tls-key go together") {
			t.Errorf("updateserver %s: exit %d %q", strings.Join(args, " "), r.code, r.stderr)
		}
	}
}
