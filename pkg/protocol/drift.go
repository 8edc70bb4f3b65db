package protocol

import "strings"

// DriftReportedOnly starts a drift line the agent reports without it
// blocking upgrades: a schema change by hand on a site whose agent is
// configured to only report them ([database] schema_drift = "report"),
// e.g. "schema (reported only): added table audit_log". Every other drift
// line blocks the site's next upgrade until support accepts it.
const DriftReportedOnly = "schema (reported only): "

// BlockingDrift returns the lines of drift that block an upgrade: all
// but those starting with DriftReportedOnly.
func BlockingDrift(drift []string) []string {
	var out []string
	for _, d := range drift {
		if !strings.HasPrefix(d, DriftReportedOnly) {
			out = append(out, d)
		}
	}
	return out
}
