package daemon

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// certCheckInterval is how often, at most, the certificate files are read
// again to see whether they changed.
const certCheckInterval = 5 * time.Second

// certReloader serves the certificate in a pair of PEM files and picks up
// a renewed pair without a restart: on a handshake, at most every
// interval, it reads the files again; when their content changed it loads
// the new pair. A new pair that does not load (half written, a key that
// does not match) is logged and the old one kept.
type certReloader struct {
	certFile, keyFile string
	interval          time.Duration
	log               *slog.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	seen    [2][]byte // the content of the files last looked at
	checked time.Time
}

// loadCertPair reads and checks a certificate and its key; the errors
// name the file at fault.
func loadCertPair(certFile, keyFile string) (*tls.Certificate, [2][]byte, error) {
	var seen [2][]byte
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, seen, fmt.Errorf("--tls-cert: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, seen, fmt.Errorf("--tls-key: %w", err)
	}
	seen = [2][]byte{certPEM, keyPEM}
	if !hasPEM(certPEM, "CERTIFICATE") {
		return nil, seen, fmt.Errorf("--tls-cert %s holds no PEM certificate (-----BEGIN CERTIFICATE-----)", certFile)
	}
	if !hasPEM(keyPEM, "PRIVATE KEY") {
		return nil, seen, fmt.Errorf("--tls-key %s holds no PEM private key (-----BEGIN ... PRIVATE KEY-----)", keyFile)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, seen, fmt.Errorf("--tls-cert %s and --tls-key %s do not load as a pair (%v): give the key the certificate was issued for", certFile, keyFile, err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, seen, fmt.Errorf("--tls-cert %s: %w", certFile, err)
		}
	}
	return &cert, seen, nil
}

// hasPEM reports whether b holds a PEM block whose type ends in suffix.
func hasPEM(b []byte, suffix string) bool {
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return false
		}
		if len(block.Type) >= len(suffix) && block.Type[len(block.Type)-len(suffix):] == suffix {
			return true
		}
	}
}

func newCertReloader(certFile, keyFile string, log *slog.Logger) (*certReloader, error) {
	cert, seen, err := loadCertPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	return &certReloader{certFile: certFile, keyFile: keyFile, interval: certCheckInterval, log: log, cert: cert, seen: seen, checked: time.Now()}, nil
}

// GetCertificate is tls.Config.GetCertificate.
func (r *certReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.checked) >= r.interval {
		r.checked = time.Now()
		r.reloadLocked()
	}
	return r.cert, nil
}

// reloadLocked loads the files again if they changed. r.mu must be held.
func (r *certReloader) reloadLocked() {
	certPEM, err1 := os.ReadFile(r.certFile)
	keyPEM, err2 := os.ReadFile(r.keyFile)
	if err1 == nil && err2 == nil && bytes.Equal(certPEM, r.seen[0]) && bytes.Equal(keyPEM, r.seen[1]) {
		return
	}
	cert, seen, err := loadCertPair(r.certFile, r.keyFile)
	if err != nil {
		// Log a bad pair once, not on every handshake; a further
		// change (the other half of a renewal) is tried again.
		if !bytes.Equal(seen[0], r.seen[0]) || !bytes.Equal(seen[1], r.seen[1]) || seen[0] == nil {
			r.log.Error("the TLS certificate files changed but do not load: still serving the previous certificate", "err", err,
				"serving_expires", r.cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
		}
		if seen[0] != nil {
			r.seen = seen
		}
		return
	}
	r.cert, r.seen = cert, seen
	r.log.Info("TLS certificate reloaded", "cert", r.certFile, "subject", cert.Leaf.Subject.String(),
		"expires", cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
}
