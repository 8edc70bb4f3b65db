package api

import (
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/dropless/dropless/pkg/airgap"
	"github.com/dropless/dropless/updateserver/internal/fault"
	"github.com/dropless/dropless/updateserver/internal/store"
)

// signedReportBody describes the body of the report routes for the API
// description: airgap.SignedReport keeps the report as raw bytes (its
// signature covers them), which on the wire is this object.
type signedReportBody struct {
	Report    airgap.Report `json:"report"`
	Signature string        `json:"signature,omitempty"`
}

// readReport reads a signed report body as it came: the signature covers
// its bytes.
func readReport(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, airgap.MaxReportBytes))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, fault.New(fault.TooLarge, "the report is larger than %d bytes", airgap.MaxReportBytes)
	}
	return b, err
}

// importReport: support imports the report client IT carried back from an
// air-gapped site (updateserver sites import-report).
func (s *Server) importReport(w http.ResponseWriter, r *http.Request) {
	deadline(w, time.Minute)
	b, err := readReport(w, r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	resp, err := s.Fleet.ImportReport(r.Context(), "", b, &store.Audit{Actor: caller(r).Actor(), Action: "site.import_report"})
	s.reply(w, r, resp, err)
}

// agentReport: an agent sends the report of the offline jobs it ran, when
// it next reaches the server.
func (s *Server) agentReport(w http.ResponseWriter, r *http.Request) {
	deadline(w, time.Minute)
	b, err := readReport(w, r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	resp, err := s.Fleet.ImportReport(r.Context(), agentSite(r), b, nil)
	s.reply(w, r, resp, err)
}
