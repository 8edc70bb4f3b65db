package runner

// What the running agent records about the server, for `updateagent
// status` (a separate process): whether it reaches the server, and if
// not, why and what to do. The runner writes it to <data_dir>/ContactFile
// after every call to the server that changed it; ReadContact reads it.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/dropless/dropless/pkg/agentapi"
	"github.com/dropless/dropless/pkg/atomicfile"
)

// Contact is what status shows about the server: whether the agent
// reaches it, and if not, why and what to do.
type Contact struct {
	Reachable bool      `json:"reachable"`
	LastOK    time.Time `json:"last_ok,omitzero"`
	// LastError is the last failure to reach the server (enroll or check
	// in), LastErrorAt when it happened; kept after the server is
	// reachable again.
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// Problem classifies LastError while the server is not reachable
	// (Problem*), Hint says what to do about it.
	Problem string `json:"problem,omitempty"`
	Hint    string `json:"hint,omitempty"`
	// RootError says that the root_sha256 in the config does not pin the
	// server's root, and what to do ("" when it does, or is not checked
	// yet).
	RootError string    `json:"root_error,omitempty"`
	At        time.Time `json:"at"`
}

// Problems, as Contact.Problem names them.
const (
	ProblemEnrollTokenRefused = "enroll_token_refused"
	ProblemSiteEnrolled       = "site_already_enrolled"
	ProblemNoEnrollToken      = "no_enroll_token"
	ProblemCredentialRefused  = "credential_refused"
	ProblemTLSUntrusted       = "tls_certificate_untrusted"
	ProblemTimeout            = "server_timeout"
	ProblemUnreachable        = "server_unreachable"
	ProblemServerError        = "server_error"
)

// classify says what err means for the person reading status, and what to
// do about it. enrolling: err came from enrolling.
func classify(err error, enrolling bool) (problem, hint string) {
	var apiErr *agentapi.Error
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var certErr *tls.CertificateVerificationError
	switch {
	case errors.Is(err, errNoEnrollToken):
		return ProblemNoEnrollToken, "ask support for an enroll token (updateserver enroll-token create) and put it in enroll_token in the config"
	case enrolling && agentapi.IsUnauthorized(err):
		return ProblemEnrollTokenRefused, "the enroll token was refused (expired, used up or revoked): ask support for a new enroll token and put it in enroll_token in the config"
	case enrolling && errors.As(err, &apiErr) && apiErr.Status == http.StatusConflict:
		return ProblemSiteEnrolled, "the site is already enrolled: ask support for an enroll token made for it (updateserver enroll-token create --site SITE --replace) and put it in enroll_token in the config"
	case agentapi.IsUnauthorized(err):
		return ProblemCredentialRefused, "the server refused the agent's credential (revoked, or the site was enrolled again from another machine); the agent keeps trying it: to enroll again, ask support for an enroll token made with --site SITE --replace and put it in enroll_token in the config"
	case errors.As(err, &unknownCA), errors.As(err, &certErr):
		return ProblemTLSUntrusted, "the server's TLS certificate is not trusted: set ca_file in the config to the CA certificate that signed it"
	case errors.As(err, &hostErr):
		return ProblemTLSUntrusted, "the server's TLS certificate is not valid for the name in server: use the name the certificate was made for"
	case errors.Is(err, agentapi.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return ProblemTimeout, "the server did not answer in time: check the network and any proxy between this machine and the server"
	case errors.As(err, &apiErr):
		return ProblemServerError, "the server answered with an error: if it lasts, ask support to look at the server's log"
	}
	return ProblemUnreachable, "check server in the config, that the server runs, and that this machine can reach it (firewall, proxy, DNS)"
}

// recordContact records the outcome of a call to the server for status.
func (r *Runner) recordContact(err error, enrolling bool) {
	if errors.Is(err, context.Canceled) {
		return
	}
	r.editContact(func(c *Contact) {
		if err == nil {
			c.Reachable, c.LastOK, c.Problem, c.Hint = true, c.At, "", ""
			return
		}
		c.Reachable = false
		c.LastError, c.LastErrorAt = err.Error(), c.At
		c.Problem, c.Hint = classify(err, enrolling)
	})
}

// editContact changes the contact and writes it to ContactFile.
func (r *Runner) editContact(edit func(*Contact)) {
	r.contactMu.Lock()
	defer r.contactMu.Unlock()
	r.contact.At = time.Now().UTC()
	edit(&r.contact)
	if err := writeJSON(filepath.Join(r.cfg.DataDir, ContactFile), r.contact); err != nil {
		r.log.Debug("cannot record the server's status for status", "err", err)
	}
}

// ReadContact reads what the running agent last recorded about the server.
func ReadContact(dataDir string) (Contact, error) {
	var c Contact
	b, err := os.ReadFile(filepath.Join(dataDir, ContactFile))
	if err != nil {
		return c, err
	}
	return c, json.Unmarshal(b, &c)
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, b, 0o644)
}
