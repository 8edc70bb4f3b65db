package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

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
	LastError        string              `json:"last_error,omitempty"`
	Drift            []string            `json:"drift,omitempty"`
	ServerReachable  bool                `json:"server_reachable"`
	LastContact      time.Time           `json:"last_contact,omitempty"`
	ServerError      string              `json:"server_error,omitempty"`
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
		fmt.Fprintf(w, "drift:      %d change(s) by hand in the running release (upgrades need --accept-drift):\n", len(s.Drift))
		for _, d := range s.Drift {
			fmt.Fprintf(w, "              %s\n", d)
		}
	}
	switch {
	case s.ServerReachable:
		fmt.Fprintf(w, "server:     %s reachable (last contact %s)\n", s.Server, s.LastContact.Local().Format(time.RFC3339))
	case s.ServerError != "":
		fmt.Fprintf(w, "server:     %s NOT reachable: %s\n", s.Server, s.ServerError)
	default:
		fmt.Fprintf(w, "server:     %s not contacted yet\n", s.Server)
	}
}

func orNothing(v string) string {
	if v == "" {
		return "(nothing)"
	}
	return v
}
