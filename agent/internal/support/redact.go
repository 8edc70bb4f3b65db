package support

import (
	"net/url"
	"regexp"
	"slices"
	"strings"
)

// Redacted replaces every secret in what the bundle holds.
const Redacted = "[redacted]"

// secretKey matches the names of keys (TOML keys, DSN or query
// parameters, headers) whose values are secrets.
var secretKey = regexp.MustCompile(`(?i)(token|secret|pass(w(or)?d)?|pwd|credential|private|api[_-]?key|auth)`)

// A TOML line key = value (bare or quoted key, dotted allowed), also
// commented out: a real secret may sit in a comment.
var tomlLine = regexp.MustCompile(`^(\s*#?\s*"?([A-Za-z0-9_.\-]+)"?\s*=\s*)(.*)$`)

// password=... in a key=value DSN or a URL query (up to a space, &, ;).
var kvSecret = regexp.MustCompile(`(?i)\b([A-Za-z_]*(?:pass(?:w(?:or)?d)?|pwd|secret|token)[A-Za-z_]*=)('[^']*'|[^\s&;'"]+)`)

// user:password@ in any URL.
var urlPassword = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s"']+):([^@\s"']+)@`)

// Authorization: Bearer xxx, and Bearer tokens anywhere.
var bearer = regexp.MustCompile(`(?i)(bearer\s+)[A-Za-z0-9._~+/=\-]+`)

// redactor scrubs text: known secret values wherever they appear, and
// anything that looks like a secret.
type redactor struct {
	values []string // literal secrets (the enroll token, the credential, DSN passwords)
}

// add remembers a literal secret (ignored when too short to be one).
func (r *redactor) add(v string) {
	v = strings.TrimSpace(v)
	if len(v) >= 4 && !slices.Contains(r.values, v) {
		r.values = append(r.values, v)
	}
}

// addDSN remembers the password of a DSN (URL or key=value).
func (r *redactor) addDSN(dsn string) {
	if u, err := url.Parse(dsn); err == nil && u.User != nil {
		if p, ok := u.User.Password(); ok {
			r.add(p)
		}
	}
	for _, m := range kvSecret.FindAllStringSubmatch(dsn, -1) {
		r.add(strings.Trim(m[2], `'"`))
	}
}

// text scrubs any text: literal secrets, URL passwords, key=value
// secrets and bearer tokens.
func (r *redactor) text(s string) string {
	for _, v := range r.values {
		s = strings.ReplaceAll(s, v, Redacted)
	}
	s = urlPassword.ReplaceAllString(s, "${1}:"+Redacted+"@")
	s = kvSecret.ReplaceAllString(s, "${1}"+Redacted)
	return bearer.ReplaceAllString(s, "${1}"+Redacted)
}

// config scrubs a TOML config file, keeping its comments: the value of
// every key whose name looks secret (enroll_token ...), then text.
func (r *redactor) config(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		m := tomlLine.FindStringSubmatch(l)
		if m == nil || !secretKey.MatchString(m[2]) {
			continue
		}
		lines[i] = m[1] + `"` + Redacted + `"` + afterValue(m[3])
	}
	return r.text(strings.Join(lines, "\n"))
}

// afterValue is what follows a TOML value on its line (a comment), for a
// quoted one; "" otherwise.
func afterValue(v string) string {
	if v == "" || (v[0] != '"' && v[0] != '\'') {
		return ""
	}
	if i := strings.IndexByte(v[1:], v[0]); i >= 0 {
		return v[i+2:]
	}
	return ""
}
