package tlstrust

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// certPEM writes a PEM file of certs and returns its path.
func certPEM(t *testing.T, certs ...*x509.Certificate) string {
	t.Helper()
	var b []byte
	for _, c := range certs {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	p := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// selfSigned makes a self-signed server certificate for 127.0.0.1, valid
// from notBefore to notAfter.
func selfSigned(t *testing.T, notBefore, notAfter time.Time) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test"},
		NotBefore: notBefore, NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true,
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

func get(t *testing.T, caFile, url string) error {
	t.Helper()
	cfg, err := ClientConfig(caFile)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: Transport(&http.Transport{TLSClientConfig: cfg}, "the server", "set ca_file to the CA that signed it")}
	resp, err := c.Get(url)
	if err == nil {
		resp.Body.Close()
	}
	return err
}

func TestExplain(t *testing.T) {
	h := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	srv := httptest.NewTLSServer(h)
	defer srv.Close()
	ca := certPEM(t, srv.Certificate())
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())

	plain := httptest.NewServer(h)
	defer plain.Close()

	expired := httptest.NewUnstartedServer(h)
	old := selfSigned(t, time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour))
	expired.TLS = &tls.Config{Certificates: []tls.Certificate{old}}
	expired.StartTLS()
	defer expired.Close()

	tests := []struct {
		name    string
		caFile  string
		url     string
		want    Problem
		wantMsg string
	}{
		{"trusted", ca, srv.URL, 0, ""},
		{"no CA", "", srv.URL, Untrusted, "the server's TLS certificate is not trusted (x509: certificate signed by unknown authority"},
		{"another name", ca, "https://localhost:" + port, WrongName, "is not for the name in its URL (x509: certificate is valid for"},
		{"expired", certPEM(t, old.Leaf), expired.URL, Invalid, "is not valid (x509: certificate has expired"},
		{"plain http", ca, strings.Replace(plain.URL, "http:", "https:", 1), NotTLS, "does not speak TLS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := get(t, tt.caFile, tt.url)
			if tt.want == 0 {
				if err != nil {
					t.Fatalf("GET: %v", err)
				}
				return
			}
			e, ok := errors.AsType[*Error](err)
			if !ok || e.Problem != tt.want {
				t.Fatalf("GET: %v (%T), want problem %d", err, err, tt.want)
			}
			t.Log(err)
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("message %q lacks %q", err, tt.wantMsg)
			}
			if tt.want == Untrusted && !strings.Contains(err.Error(), ": set ca_file to the CA that signed it") {
				t.Errorf("message %q lacks the fix", err)
			}
		})
	}
	// Errors that are not about TLS pass through unchanged.
	other := errors.New("connection refused")
	if got := Explain(other, "s", "f"); got != other {
		t.Errorf("Explain(other) = %v", got)
	}
}

func TestClientConfig(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	os.WriteFile(notPEM, []byte("hello\n"), 0o644)
	badCert := filepath.Join(dir, "bad.pem")
	os.WriteFile(badCert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("junk")}), 0o644)
	missing := filepath.Join(dir, "missing.pem")
	tests := []struct {
		name, file, wantErr string
	}{
		{"none", "", ""},
		{"missing", missing, missing},
		{"not PEM", notPEM, notPEM + " holds no PEM certificate"},
		{"bad certificate", badCert, badCert + ": certificate 1 does not parse"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := ClientConfig(tt.file)
			if tt.wantErr == "" {
				if err != nil || cfg.MinVersion != tls.VersionTLS12 {
					t.Fatalf("ClientConfig = %+v, %v", cfg, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ClientConfig(%s) = %v, want %q", tt.file, err, tt.wantErr)
			}
		})
	}
}
