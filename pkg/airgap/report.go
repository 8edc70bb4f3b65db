package airgap

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/pkg/versions"
)

// ReportFormat is the report format this package writes and reads.
const ReportFormat = 1

// JobIDPrefix starts the ID of every job an agent ran from an air-gap file.
const JobIDPrefix = "offline-"

// Report is what an agent that applied an air-gap file tells the server:
// the jobs it ran and the version installed after them. It travels in a
// SignedReport, either in a file client IT carries back (`apply-offline
// --report`, `updateserver sites import-report`) or through the agent API
// when the agent next reaches the server.
type Report struct {
	Format           int         `json:"format"`
	Site             string      `json:"site"`
	Client           string      `json:"client"`
	Product          string      `json:"product"`
	AgentVersion     string      `json:"agent_version,omitempty"`
	InstalledVersion string      `json:"installed_version"`
	WrittenAt        time.Time   `json:"written_at"`
	Jobs             []ReportJob `json:"jobs"`
}

// ReportJob is one job the agent ran from the file.
type ReportJob struct {
	ID     string           `json:"job_id"`
	From   string           `json:"from"`
	To     string           `json:"to"`
	Target string           `json:"target"`
	Result string           `json:"result"`
	Events []protocol.Event `json:"events"`
}

// SignedReport is the report as it travels: the report and, when the
// agent had a credential, an HMAC-SHA256 of its compact JSON keyed with the
// credential's hash (the hex sha256 the server keeps of it). Whoever
// carries the file can read it but cannot change it nor write one for
// another site without the agent's credential.
type SignedReport struct {
	Report json.RawMessage `json:"report"`
	// Signature is "hmac-sha256:<hex>", or "" when the agent had no
	// credential (it never enrolled).
	Signature string `json:"signature,omitempty"`
}

// Limits of a report.
const (
	MaxReportBytes  = 16 << 20
	maxReportJobs   = 100
	maxReportEvents = 10000
)

// CredentialKey is the signing key of an agent's reports: the hex sha256
// of its credential, which is what the server stores.
func CredentialKey(credential string) string {
	s := sha256.Sum256([]byte(credential))
	return hex.EncodeToString(s[:])
}

// Sign encodes r and signs it with key (CredentialKey; "" leaves it
// unsigned).
func Sign(r Report, key string) ([]byte, error) {
	r.Format = ReportFormat
	raw, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	sr := SignedReport{Report: raw}
	if key != "" {
		sr.Signature = "hmac-sha256:" + hex.EncodeToString(mac(raw, key))
	}
	return json.MarshalIndent(sr, "", "  ")
}

func mac(raw []byte, key string) []byte {
	m := hmac.New(sha256.New, []byte(key))
	m.Write(raw)
	return m.Sum(nil)
}

// ErrSignature is matched by a report whose signature is missing or does
// not verify.
var ErrSignature = errors.New("the report's signature does not verify")

// Verify checks sr's signature with key (the site's credential hash).
func (sr SignedReport) Verify(key string) error {
	hexSig, ok := strings.CutPrefix(sr.Signature, "hmac-sha256:")
	if !ok {
		if sr.Signature == "" {
			return fmt.Errorf("%w: the report is not signed (the agent had no credential)", ErrSignature)
		}
		return fmt.Errorf("%w: unknown signature scheme", ErrSignature)
	}
	// The signature is of the compact encoding: re-indenting the file
	// (as json.MarshalIndent does to the raw report) changes no byte of it.
	var compact bytes.Buffer
	if err := json.Compact(&compact, sr.Report); err != nil {
		return fmt.Errorf("%w: the report is not valid JSON", ErrSignature)
	}
	sig, err := hex.DecodeString(hexSig)
	if err != nil || !hmac.Equal(sig, mac(compact.Bytes(), key)) {
		return fmt.Errorf("%w: it was changed after the agent wrote it, or it is not from this site's agent (enrolled again since?)", ErrSignature)
	}
	return nil
}

// ParseReport decodes a signed report defensively: size, shape, and every
// field the server stores. It does not check the signature (Verify).
func ParseReport(b []byte) (SignedReport, Report, error) {
	var sr SignedReport
	var r Report
	if len(b) > MaxReportBytes {
		return sr, r, fmt.Errorf("the report is %d bytes, more than the %d allowed", len(b), MaxReportBytes)
	}
	if err := json.Unmarshal(b, &sr); err != nil {
		return sr, r, fmt.Errorf("the report is not a report written by updateagent apply-offline --report: %v", err)
	}
	if len(sr.Report) == 0 {
		return sr, r, errors.New("the file holds no report: give the file updateagent apply-offline --report wrote")
	}
	if err := json.Unmarshal(sr.Report, &r); err != nil {
		return sr, r, fmt.Errorf("the report is not valid: %v", err)
	}
	return sr, r, r.Validate()
}

// Validate checks what the server stores of r.
func (r *Report) Validate() error {
	if r.Format != ReportFormat {
		return fmt.Errorf("report format %d; this server reads format %d", r.Format, ReportFormat)
	}
	if r.Site == "" || r.Product == "" {
		return errors.New("the report names no site or product")
	}
	if len(r.Jobs) == 0 || len(r.Jobs) > maxReportJobs {
		return fmt.Errorf("the report lists %d jobs (1 to %d allowed)", len(r.Jobs), maxReportJobs)
	}
	if r.InstalledVersion != "" {
		if _, err := versions.Parse(r.InstalledVersion); err != nil {
			return fmt.Errorf("installed_version %q: %v", r.InstalledVersion, err)
		}
	}
	seen := map[string]bool{}
	for i, j := range r.Jobs {
		if !strings.HasPrefix(j.ID, JobIDPrefix) || len(j.ID) > protocol.MaxJobID {
			return fmt.Errorf("jobs[%d].job_id %q is not the ID of an offline job", i, j.ID)
		}
		if seen[j.ID] {
			return fmt.Errorf("job %s is listed twice", j.ID)
		}
		seen[j.ID] = true
		if _, err := versions.Parse(j.To); err != nil {
			return fmt.Errorf("jobs[%d].to %q: %v", i, j.To, err)
		}
		if j.From != "" {
			if _, err := versions.Parse(j.From); err != nil {
				return fmt.Errorf("jobs[%d].from %q: %v", i, j.From, err)
			}
		}
		switch j.Result {
		case protocol.ResultSucceeded, protocol.ResultRolledBack, protocol.ResultFailed:
		default:
			return fmt.Errorf("jobs[%d].result %q: an offline job in a report has ended (succeeded, rolled_back or failed)", i, j.Result)
		}
		if len(j.Events) == 0 || len(j.Events) > maxReportEvents {
			return fmt.Errorf("jobs[%d] has %d events (1 to %d allowed)", i, len(j.Events), maxReportEvents)
		}
		for k := range j.Events {
			if err := j.Events[k].Validate(k); err != nil {
				return fmt.Errorf("jobs[%d]: %v", i, err)
			}
			if j.Events[k].JobID != j.ID {
				return fmt.Errorf("jobs[%d].events[%d] is of job %s", i, k, j.Events[k].JobID)
			}
		}
	}
	return nil
}
