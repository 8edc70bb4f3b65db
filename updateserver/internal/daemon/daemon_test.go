package daemon

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dropless/dropless/pkg/bundle"
	"github.com/dropless/dropless/pkg/tlstrust/tlstest"
	"github.com/dropless/dropless/updateserver/internal/store/storetest"
	"github.com/dropless/dropless/updateserver/internal/tufrepo"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// logBuffer collects a daemon's log, safe to read while it writes.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func testConfig(t *testing.T, data string) (Config, *logBuffer) {
	logs := &logBuffer{}
	return Config{
		DataDir:         data,
		MaxBundleSize:   DefaultMaxBundleSize,
		Expiry:          tufrepo.DefaultExpiry(),
		RefreshInterval: time.Minute,
		PollInterval:    DefaultPollInterval,
		JobTimeout:      DefaultJobTimeout,
		Log:             slog.New(slog.NewTextHandler(logs, nil)),
	}, logs
}

// serve runs an opened daemon until the test ends.
func serve(t *testing.T, d *Daemon) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := d.Serve(ctx); err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		d.Close()
	})
}

// TestCertificateReload: a renewed certificate is served on the next new
// connection without a restart; a new pair that does not load is logged
// and the previous certificate kept.
func TestCertificateReload(t *testing.T) {
	ca := tlstest.NewCA(t, "test CA")
	first := ca.Issue()
	cfg, logs := testConfig(t, filepath.Join(t.TempDir(), "data"))
	cfg.Listen, cfg.TLSCert, cfg.TLSKey = "127.0.0.1:0", first.CertFile, first.KeyFile
	d, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	d.certs.interval = 0 // look at the files on every handshake
	serve(t, d)

	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	served := func() *x509.Certificate {
		t.Helper()
		conn, err := tls.Dial("tcp", d.Addr(), &tls.Config{RootCAs: roots, ServerName: "localhost"})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if v := conn.ConnectionState().Version; v < tls.VersionTLS12 {
			t.Errorf("TLS version %x", v)
		}
		return conn.ConnectionState().PeerCertificates[0]
	}
	if got := served(); !got.Equal(first.Cert) {
		t.Fatalf("serving serial %v, want the first certificate %v", got.SerialNumber, first.Cert.SerialNumber)
	}
	if !strings.Contains(logs.String(), "addr=https://"+d.Addr()) {
		t.Errorf("the log does not give the https:// address:\n%s", logs)
	}

	renewed := ca.Issue()
	renewed.InstallAt(t, first.CertFile, first.KeyFile)
	if got := served(); !got.Equal(renewed.Cert) {
		t.Fatalf("after renewal serving serial %v, want %v", got.SerialNumber, renewed.Cert.SerialNumber)
	}
	if !strings.Contains(logs.String(), "TLS certificate reloaded") {
		t.Errorf("no reload in the log:\n%s", logs)
	}

	// Half a renewal: a new certificate with the old key.
	next := ca.Issue()
	if err := os.WriteFile(first.CertFile, next.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := served(); !got.Equal(renewed.Cert) {
		t.Fatalf("with a mismatched pair serving serial %v, want the previous %v", got.SerialNumber, renewed.Cert.SerialNumber)
	}
	if !strings.Contains(logs.String(), "do not load: still serving the previous certificate") {
		t.Errorf("the bad pair is not in the log:\n%s", logs)
	}
	// The other half arrives.
	if err := os.WriteFile(first.KeyFile, next.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := served(); !got.Equal(next.Cert) {
		t.Fatalf("after the key arrived serving serial %v, want %v", got.SerialNumber, next.Cert.SerialNumber)
	}
}

// TestOpenTLSErrors: a certificate that does not load stops the start with
// an error naming the file, before the data dir is created.
func TestOpenTLSErrors(t *testing.T) {
	ca := tlstest.NewCA(t, "test CA")
	a, b := ca.Issue(), ca.Issue()
	missing := filepath.Join(t.TempDir(), "missing.pem")
	tests := []struct {
		name, cert, key string
		wantErr         []string
	}{
		{"missing certificate", missing, a.KeyFile, []string{"--tls-cert", missing}},
		{"missing key", a.CertFile, missing, []string{"--tls-key", missing}},
		{"key for another certificate", a.CertFile, b.KeyFile, []string{a.CertFile, b.KeyFile, "do not load as a pair"}},
		{"certificate given as key", a.CertFile, a.CertFile, []string{"--tls-key " + a.CertFile + " holds no PEM private key"}},
		{"key given as certificate", a.KeyFile, a.KeyFile, []string{"--tls-cert " + a.KeyFile + " holds no PEM certificate"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := filepath.Join(t.TempDir(), "data")
			cfg, _ := testConfig(t, data)
			cfg.Listen, cfg.TLSCert, cfg.TLSKey = "127.0.0.1:0", tt.cert, tt.key
			d, err := Open(context.Background(), cfg)
			if err == nil {
				d.Close()
				t.Fatal("Open succeeded")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if _, err := os.Stat(data); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("data dir created anyway: %v", err)
			}
		})
	}
}

// TestDataDirLocked: while one server has the data dir, a second is
// refused with an error that names the first's pid; once the first is
// gone the second starts.
func TestDataDirLocked(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	cfg, _ := testConfig(t, data)
	first, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Open(context.Background(), cfg)
	want := fmt.Sprintf("data dir %s is in use by another updateserver (pid %d): stop it first, or use another --data", data, os.Getpid())
	if err == nil || err.Error() != want {
		t.Fatalf("second Open: %v\nwant: %s", err, want)
	}
	first.Close()
	second, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Open after the first closed: %v", err)
	}
	second.Close()
}

// TestBindFirst: an address in use stops the start with an error naming
// it, before anything is created in the data dir.
func TestBindFirst(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	data := filepath.Join(t.TempDir(), "data")
	cfg, _ := testConfig(t, data)
	cfg.Listen = ln.Addr().String()
	d, err := Open(context.Background(), cfg)
	if err == nil {
		d.Close()
		t.Fatal("Open succeeded on an address in use")
	}
	if !strings.Contains(err.Error(), "listen on "+cfg.Listen+": the address is in use") {
		t.Errorf("error %q does not name the address", err)
	}
	if _, err := os.Stat(data); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("data dir created anyway: %v", err)
	}
}

// TestCleanStagingAtStart: what killed uploads left in staging is removed
// at the next start, however recent; a complete, recorded upload stays and
// can still be published.
func TestCleanStagingAtStart(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	cfg, _ := testConfig(t, data)
	d, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "files"), 0o755)
	os.WriteFile(filepath.Join(src, "files", "app"), []byte("payload"), 0o644)
	var tgz bytes.Buffer
	if err := bundle.Pack(context.Background(), src, &tgz); err != nil {
		t.Fatal(err)
	}
	up, err := d.Publisher.Upload(context.Background(), &tgz, "test")
	if err != nil {
		t.Fatal(err)
	}
	d.Close()

	uploads := filepath.Join(data, UploadsDir)
	kept := filepath.Join(uploads, up.ID+".tar.gz")
	partial := filepath.Join(uploads, "0123456789abcdef0123456789abcdef.123456.part") // a killed upload
	orphan := filepath.Join(uploads, "fedcba9876543210fedcba9876543210.tar.gz")       // staged, never recorded
	for _, p := range []string{partial, orphan} {
		if err := os.WriteFile(p, []byte("half a bundle"), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	d, err = Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for _, p := range []string{partial, orphan} {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s still there after a restart: %v", filepath.Base(p), err)
		}
	}
	if _, err := os.Stat(kept); err != nil {
		t.Errorf("the recorded upload was removed: %v", err)
	}
	if _, err := d.Store.GetUpload(context.Background(), up.ID); err != nil {
		t.Errorf("the recorded upload is forgotten: %v", err)
	}
}

// Replicas started together on an empty PostgreSQL store and an empty
// shared data directory initialise it once: every replica starts, the
// key files are the keys the stored root names, and the one admin token
// in admin.token works.
func TestReplicasInitialiseOnce(t *testing.T) {
	dsn := storetest.Schema(t)
	data := filepath.Join(t.TempDir(), "data")
	const replicas = 4
	opened := make([]*Daemon, replicas)
	errs := make([]error, replicas)
	var wg sync.WaitGroup
	for i := range replicas {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cfg, _ := testConfig(t, data)
			cfg.Store = dsn
			opened[i], errs[i] = Open(context.Background(), cfg)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("replica %d: %v", i, err)
		}
		t.Cleanup(func() { opened[i].Close() })
	}
	ctx := context.Background()
	st := opened[0].Store
	rootRow, err := st.MetadataVersion(ctx, tufrepo.RoleRoot, 1)
	if err != nil {
		t.Fatal(err)
	}
	root, err := metadata.Root().FromBytes(rootRow.Data)
	if err != nil {
		t.Fatal(err)
	}
	keys := tufrepo.KeyStore{Dir: filepath.Join(data, KeysDir)}
	for _, role := range tufrepo.TopLevelRoles {
		s, err := keys.Signer(role)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(root.Signed.Roles[role].KeyIDs, s.ID) {
			t.Errorf("the %s key file (%s) is not a key the stored root names for it (%v)", role, s.ID, root.Signed.Roles[role].KeyIDs)
		}
	}
	if n, err := st.CountTokens(ctx); err != nil || n != 1 {
		t.Errorf("%d tokens (%v), want the one admin token", n, err)
	}
	secret, err := os.ReadFile(filepath.Join(data, AdminTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Authenticate(ctx, strings.TrimSpace(string(secret)), time.Now()); err != nil {
		t.Errorf("the token in %s does not authenticate: %v", AdminTokenFile, err)
	}
}
