// Package tlstrust is the client side of TLS for the agent and the operator
// CLI: a tls.Config that trusts the system's roots plus the CAs of a PEM
// file, and errors that name the certificate problem that broke a
// connection (not trusted, issued for another name, expired, not TLS at
// all) and say what to do about it.
package tlstrust

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
)

// ClientConfig returns a TLS config (TLS 1.2 or later) that trusts the
// system's roots and, when caFile is not "", every certificate in that PEM
// file. A file that cannot be read, or holds no certificate, is an error
// that names it.
func ClientConfig(caFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile == "" {
		return cfg, nil // nil RootCAs: the system's
	}
	b, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	n := 0
	for rest := b; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: certificate %d does not parse: %v", caFile, n+1, err)
		}
		pool.AddCert(cert)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("%s holds no PEM certificate (-----BEGIN CERTIFICATE-----)", caFile)
	}
	cfg.RootCAs = pool
	return cfg, nil
}

// Problem is what was wrong with a server's TLS.
type Problem int

// The problems Explain recognises.
const (
	Untrusted Problem = iota + 1 // signed by a CA this side does not trust
	WrongName                    // issued for other names or addresses than the one dialled
	Invalid                      // expired, not yet valid, or not usable for a server
	NotTLS                       // the server answered in plain HTTP
)

// Error is a TLS failure explained in one sentence.
type Error struct {
	Problem Problem
	Server  string // who presented the certificate, e.g. "the update server"
	Fix     string // what to do about an Untrusted certificate
	Detail  error  // the x509 or tls error that says exactly what failed
	Err     error  // the whole error, as the transport returned it
}

func (e *Error) Error() string {
	switch e.Problem {
	case Untrusted:
		return fmt.Sprintf("%s's TLS certificate is not trusted (%v): %s", e.Server, e.Detail, e.Fix)
	case WrongName:
		return fmt.Sprintf("%s's TLS certificate is not for the name in its URL (%v): use a name or address the certificate lists, or issue a certificate for this one", e.Server, e.Detail)
	case Invalid:
		return fmt.Sprintf("%s's TLS certificate is not valid (%v): renew it on the server (or correct this machine's clock)", e.Server, e.Detail)
	default:
		return fmt.Sprintf("%s does not speak TLS (%v): use http:// for it, or check the port", e.Server, e.Detail)
	}
}

// Unwrap returns the transport's error.
func (e *Error) Unwrap() error { return e.Err }

// Explain returns err as an *Error when it is a failure to verify the
// server's certificate (or a server that does not speak TLS at all), and
// err itself otherwise. server names the server in the sentence ("the
// update server"); fix says how to trust its CA ("set ca_file to the CA
// that signed it").
func Explain(err error, server, fix string) error {
	if err == nil {
		return nil
	}
	if _, ok := errors.AsType[*Error](err); ok {
		return err
	}
	mk := func(p Problem, detail error) error {
		return &Error{Problem: p, Server: server, Fix: fix, Detail: detail, Err: err}
	}
	if e, ok := errors.AsType[x509.UnknownAuthorityError](err); ok {
		return mk(Untrusted, e)
	}
	if e, ok := errors.AsType[x509.HostnameError](err); ok {
		return mk(WrongName, e)
	}
	if e, ok := errors.AsType[x509.CertificateInvalidError](err); ok {
		return mk(Invalid, e)
	}
	if e, ok := errors.AsType[tls.RecordHeaderError](err); ok {
		return mk(NotTLS, errors.New(e.Msg))
	}
	if e, ok := errors.AsType[*tls.CertificateVerificationError](err); ok {
		// Another verification failure (e.g. a constraint): name it.
		return mk(Untrusted, e.Err)
	}
	return err
}

// Transport wraps rt so that every error it returns goes through Explain.
func Transport(rt http.RoundTripper, server, fix string) http.RoundTripper {
	return &explainer{rt: rt, server: server, fix: fix}
}

type explainer struct {
	rt          http.RoundTripper
	server, fix string
}

func (e *explainer) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := e.rt.RoundTrip(req)
	if err != nil {
		return nil, Explain(err, e.server, e.fix)
	}
	return resp, nil
}

// CloseIdleConnections passes http.Client.CloseIdleConnections on.
func (e *explainer) CloseIdleConnections() {
	if c, ok := e.rt.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}
