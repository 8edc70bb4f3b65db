package protocol

import (
	"fmt"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Bounds on what an agent may send. The server refuses (400) a check-in or
// an event that breaks a hard bound, naming the field; free text that an
// agent derives from its site (event messages, drift lines) is cut and
// escaped instead, so that an odd file name never stops a site's reports.
const (
	MaxHostname     = 255
	MaxAgentVersion = 128
	MaxPlatform     = 32 // os, arch
	MaxVersion      = 64
	MaxJobID        = 128
	// MaxDriftLines is the most drift lines a check-in may carry; the
	// server keeps KeepDriftLines of them.
	MaxDriftLines  = 1000
	KeepDriftLines = 100
	// MaxDriftLine is the longest drift line accepted; the server keeps
	// KeepDriftLine bytes of each.
	MaxDriftLine  = 8 << 10
	KeepDriftLine = 512
	// KeepMessage is how much of an event's message the server keeps.
	KeepMessage = 2 << 10
)

var agentStates = map[string]bool{
	StateIdle: true, StateDownloading: true, StateVerified: true, StatePreflight: true, StateStopping: true,
	StateStaging: true, StateBackingUp: true, StateMigrating: true, StateSwitching: true, StateStarting: true,
	StateHealthCheck: true, StateCommitted: true, StateRollingBack: true, StateRolledBack: true, StateFailed: true,
}

// ValidState reports whether s is a known agent state.
func ValidState(s string) bool { return agentStates[s] }

// ValidResult reports whether r is a known job result.
func ValidResult(r string) bool {
	switch r {
	case ResultPending, ResultRunning, ResultSucceeded, ResultRolledBack, ResultFailed:
		return true
	}
	return false
}

// FieldError is a request field an agent got wrong.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// checkText refuses a string longer than max bytes, not UTF-8, or with
// control characters.
func checkText(field, v string, max int) error {
	if len(v) > max {
		return fieldErr(field, "%d bytes; send at most %d", len(v), max)
	}
	if !utf8.ValidString(v) {
		return fieldErr(field, "not valid UTF-8")
	}
	for _, r := range v {
		if isControl(r) {
			return fieldErr(field, "contains the control character %U", r)
		}
	}
	return nil
}

// checkVersion refuses what cannot be a version string: the server parses
// versions itself, this only bounds size and characters.
func checkVersion(field, v string) error {
	if len(v) > MaxVersion {
		return fieldErr(field, "%d bytes; send at most %d", len(v), MaxVersion)
	}
	for _, r := range v {
		if !(r < utf8.RuneSelf && (r == '.' || r == '-' || r == '+' || r == '_' || r == '~' || unicode.IsLetter(r) || unicode.IsDigit(r))) {
			return fieldErr(field, "%q is not a version", v)
		}
	}
	return nil
}

func stateList() string {
	return "idle, downloading, verified, preflight, stopping, staging, backing_up, migrating, switching, starting, health_check, committed, rolling_back, rolled_back or failed"
}

// Validate checks a check-in against the protocol's bounds; the error
// names the first field at fault. An empty state means idle.
func (c *CheckinRequest) Validate() error {
	if c.State != "" && !ValidState(c.State) {
		return fieldErr("state", "%q is not an agent state (%s)", trimForError(c.State), stateList())
	}
	if err := checkVersion("installed_version", c.InstalledVersion); err != nil {
		return err
	}
	for _, f := range []struct {
		name, v string
		max     int
	}{{"hostname", c.Hostname, MaxHostname}, {"agent_version", c.AgentVersion, MaxAgentVersion}, {"os", c.OS, MaxPlatform}, {"arch", c.Arch, MaxPlatform}} {
		if err := checkText(f.name, f.v, f.max); err != nil {
			return err
		}
	}
	if j := c.Job; j != nil {
		if j.ID == "" {
			return fieldErr("job.job_id", "empty: send the ID of the job the agent runs or ran last, or no job")
		}
		if err := checkText("job.job_id", j.ID, MaxJobID); err != nil {
			return err
		}
		if err := checkVersion("job.from", j.From); err != nil {
			return err
		}
		if err := checkVersion("job.to", j.To); err != nil {
			return err
		}
		if j.State != "" && !ValidState(j.State) {
			return fieldErr("job.state", "%q is not an agent state (%s)", trimForError(j.State), stateList())
		}
		if j.Result != "" && !ValidResult(j.Result) {
			return fieldErr("job.result", "%q is not a job result (pending, running, succeeded, rolled_back or failed)", trimForError(j.Result))
		}
	}
	if len(c.Drift) > MaxDriftLines {
		return fieldErr("drift", "%d lines; send at most %d", len(c.Drift), MaxDriftLines)
	}
	for i, d := range c.Drift {
		if len(d) > MaxDriftLine {
			return fieldErr(fmt.Sprintf("drift[%d]", i), "%d bytes; send at most %d", len(d), MaxDriftLine)
		}
	}
	return nil
}

// CleanDrift returns drift as the server keeps it: at most KeepDriftLines
// lines (the last one then says how many more there were), each at most
// KeepDriftLine bytes, control characters escaped.
func CleanDrift(drift []string) []string {
	if len(drift) == 0 {
		return nil
	}
	n := len(drift)
	if n > KeepDriftLines {
		n = KeepDriftLines - 1
	}
	out := make([]string, 0, min(len(drift), KeepDriftLines))
	for _, d := range drift[:n] {
		out = append(out, CleanText(d, KeepDriftLine, false))
	}
	if n < len(drift) {
		out = append(out, fmt.Sprintf("... and %d more changes", len(drift)-n))
	}
	return out
}

// Validate checks one event; i is its index in the batch, for the error.
func (e *Event) Validate(i int) error {
	field := func(f string) string { return fmt.Sprintf("events[%d].%s", i, f) }
	if e.JobID == "" {
		return fieldErr(field("job_id"), "empty: every event needs job_id, seq (from 1) and state")
	}
	if err := checkText(field("job_id"), e.JobID, MaxJobID); err != nil {
		return err
	}
	if e.Seq < 1 {
		return fieldErr(field("seq"), "%d: sequence numbers start at 1", e.Seq)
	}
	if !ValidState(e.State) {
		return fieldErr(field("state"), "%q is not an agent state (%s)", trimForError(e.State), stateList())
	}
	return nil
}

// CleanText returns s as the server keeps free text an agent sent: invalid
// UTF-8 replaced, control characters escaped (newlines and tabs kept when
// multiline), and cut to at most max bytes with a marker saying how long
// it was.
func CleanText(s string, max int, multiline bool) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || (isControl(r) && !(multiline && (r == '\n' || r == '\t'))) {
			clean = false
			break
		}
	}
	if clean && len(s) <= max {
		return s
	}
	var b strings.Builder
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		switch {
		case multiline && (r == '\n' || r == '\t'):
			b.WriteRune(r)
		case isControl(r) && r <= 0xff:
			fmt.Fprintf(&b, "\\x%02x", r)
		case isControl(r):
			fmt.Fprintf(&b, "\\u%04x", r)
		default:
			b.WriteRune(r)
		}
		if b.Len() > max {
			break
		}
	}
	out := b.String()
	if len(out) <= max && len(s) <= max {
		return out
	}
	marker := fmt.Sprintf("… (truncated, %d bytes)", len(s))
	cut := max - len(marker)
	if cut < 0 {
		cut = 0
	}
	cut = min(cut, len(out))
	for cut > 0 && !utf8.RuneStart(out[cut]) {
		cut--
	}
	return out[:cut] + marker
}

// isControl reports control characters, including the bidirectional
// overrides that make a terminal show text other than what it holds.
func isControl(r rune) bool {
	return unicode.IsControl(r) || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069)
}

// trimForError shortens a refused value for the error message.
func trimForError(s string) string {
	if len(s) > 40 {
		s = s[:40] + "..."
	}
	return strings.ToValidUTF8(s, "?")
}

// NamePattern is the form of a site, client, product or channel name:
// lower-case letters, digits, '.', '_' and '-', starting with a letter or
// digit, at most 64 bytes. Agent and server check names against it.
const NamePattern = `^[a-z0-9][a-z0-9._-]{0,63}$`

var nameRe = regexp.MustCompile(NamePattern)

// ValidName checks that v, a name of the given kind ("site", "client"...),
// matches NamePattern; the error names kind and v and says what to use.
func ValidName(kind, v string) error {
	if !nameRe.MatchString(v) {
		return fmt.Errorf("%s %q is not valid: use lower-case letters, digits, '.', '_' and '-' (at most 64)", kind, v)
	}
	return nil
}
