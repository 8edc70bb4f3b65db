package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/dropless/dropless/agent/internal/config"
	"github.com/dropless/dropless/agent/internal/engine"
	"github.com/dropless/dropless/agent/internal/runner"
	"github.com/dropless/dropless/pkg/protocol"
)

type statusJSON struct {
	Site             string              `json:"site"`
	Client           string              `json:"client"`
	Product          string              `json:"product"`
	Server           string              `json:"server"`
	InstalledVersion string              `json:"installed_version"`
	State            string              `json:"state"`
	CurrentJob       *protocol.JobStatus `json:"current_job,omitempty"`
	LastJob          *protocol.JobStatus `json:"last_job,omitempty"`
	LastError        string              `json:"last_error,omitempty"` // why the last job failed or rolled back
	Drift            []string            `json:"drift,omitempty"`
	ServerReachable  bool                `json:"server_reachable"`
	LastContact      time.Time           `json:"last_contact,omitzero"`
	// While the server is not reachable: the last error, when it
	// happened, what it means (runner.Problem*) and what to do.
	ServerError   string    `json:"server_error,omitempty"`
	ServerErrorAt time.Time `json:"server_error_at,omitzero"`
	ServerProblem string    `json:"server_problem,omitempty"`
	Hint          string    `json:"hint,omitempty"`
	// RootError: root_sha256 does not pin the server's root, and what to do.
	RootError string `json:"root_error,omitempty"`
}

// newStatus puts together what status shows: the journal's status and
// what the running agent last recorded about the server.
func newStatus(cfg *config.Config, st engine.Status, c runner.Contact) statusJSON {
	out := statusJSON{
		Site: cfg.Site, Client: cfg.Client, Product: cfg.Product, Server: cfg.Server,
		InstalledVersion: st.InstalledVersion, State: st.State, CurrentJob: st.CurrentJob, LastJob: st.LastJob,
		LastError: st.LastError, Drift: st.Drift,
		ServerReachable: c.Reachable, LastContact: c.LastOK, RootError: c.RootError,
	}
	if out.State == "" {
		out.State = protocol.StateIdle
	}
	if !c.Reachable && c.LastError != "" {
		out.ServerError, out.ServerErrorAt, out.ServerProblem, out.Hint = c.LastError, c.LastErrorAt, c.Problem, c.Hint
	}
	return out
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func printStatus(w io.Writer, s statusJSON) {
	installed := s.InstalledVersion
	if installed == "" {
		installed = "(nothing yet)"
	}
	fmt.Fprintf(w, "site:       %s (client %s, product %s)\ninstalled:  %s\nstate:      %s\n", s.Site, s.Client, s.Product, installed, s.State)
	if j := s.CurrentJob; j != nil {
		fmt.Fprintf(w, "job:        %s %s -> %s, at step %s\n", j.ID, orNothing(j.From), j.To, j.State)
	}
	if j := s.LastJob; j != nil {
		fmt.Fprintf(w, "last job:   %s %s -> %s: %s\n", j.ID, orNothing(j.From), j.To, j.Result)
	}
	if s.LastError != "" {
		fmt.Fprintf(w, "last error: %s\n", s.LastError)
	}
	if len(s.Drift) > 0 {
		need := "upgrades need --accept-drift"
		if len(protocol.BlockingDrift(s.Drift)) == 0 {
			need = "reported only, upgrades go ahead"
		}
		fmt.Fprintf(w, "drift:      %d change(s) by hand in the running release (%s):\n", len(s.Drift), need)
		for _, d := range s.Drift {
			fmt.Fprintf(w, "              %s\n", d)
		}
	}
	switch {
	case s.ServerReachable:
		fmt.Fprintf(w, "server:     %s reachable (last contact %s)\n", s.Server, s.LastContact.Local().Format(time.RFC3339))
	case s.ServerError != "":
		fmt.Fprintf(w, "server:     %s NOT reachable (%s, since %s): %s\n", s.Server, problemText(s.ServerProblem), s.ServerErrorAt.Local().Format(time.RFC3339), s.ServerError)
		if s.Hint != "" {
			fmt.Fprintf(w, "what to do: %s\n", s.Hint)
		}
	default:
		fmt.Fprintf(w, "server:     %s not contacted yet (is the agent running? updateagent start)\n", s.Server)
	}
	if s.RootError != "" {
		fmt.Fprintf(w, "root:       %s\n", s.RootError)
	}
}

// problemText says a runner.Problem* in words.
func problemText(p string) string {
	switch p {
	case runner.ProblemEnrollTokenRefused:
		return "enroll token refused"
	case runner.ProblemSiteEnrolled:
		return "site already enrolled"
	case runner.ProblemNoEnrollToken:
		return "no enroll token"
	case runner.ProblemCredentialRefused:
		return "credential refused"
	case runner.ProblemTLSUntrusted:
		return "TLS certificate not trusted"
	case runner.ProblemTimeout:
		return "no answer in time"
	case runner.ProblemServerError:
		return "server error"
	}
	return "unreachable"
}

func orNothing(v string) string {
	if v == "" {
		return "(nothing)"
	}
	return v
}
