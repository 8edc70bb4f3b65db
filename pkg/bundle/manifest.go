package bundle

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	version "github.com/hashicorp/go-version"
)

// ManifestName is the name of the manifest file at the top of a bundle.
const ManifestName = "bundle.toml"

// MaxManifestSize is the largest bundle.toml accepted, in bytes.
const MaxManifestSize = 64 << 10

// DefaultHookTimeout is how long a hook may run when the manifest does not
// set hooks.timeout.
const DefaultHookTimeout = 5 * time.Minute

const (
	maxProductLen = 64
	maxVersionLen = 128
)

// Manifest is the content of bundle.toml. Every field is optional: the
// publisher may supply product, version and upgrade_from by flags, which
// win over the manifest. Fields that are set must be valid.
type Manifest struct {
	// Product names the managed application: [a-z0-9][a-z0-9._-]*, at most
	// 64 characters.
	Product string `toml:"product"`
	// Version is the release's version, parsed by hashicorp/go-version
	// (semantic versioning such as 1.2.3 or 2.0.0-rc.1, without a leading "v").
	Version string `toml:"version"`
	// UpgradeFrom is a go-version constraint on the installed version this
	// release may upgrade from, e.g. ">= 2.0, < 3.0".
	UpgradeFrom string `toml:"upgrade_from"`
	// Notes are free-form release notes.
	Notes string `toml:"notes"`
	// Irreversible says the migrations cannot be rolled back.
	Irreversible bool `toml:"irreversible"`
	// Hooks configures the executables in hooks/.
	Hooks Hooks `toml:"hooks"`
	// Health overrides the agent's health check for this release.
	Health Health `toml:"health"`
}

// Hooks is the [hooks] table of bundle.toml.
type Hooks struct {
	// Timeout is how long each hook may run, as a Go duration ("90s", "5m").
	// Empty means DefaultHookTimeout.
	Timeout string `toml:"timeout"`
}

// TimeoutDuration returns the hook timeout, DefaultHookTimeout when unset.
// It assumes the manifest was validated; an invalid value also gives the
// default.
func (h Hooks) TimeoutDuration() time.Duration {
	d, err := parseTimeout(h.Timeout)
	if err != nil || d == 0 {
		return DefaultHookTimeout
	}
	return d
}

// Health is the [health] table of bundle.toml. Set fields override the
// agent's configuration: URL must answer 2xx, or Cmd must exit 0, within
// Timeout.
type Health struct {
	// URL is an absolute http or https URL.
	URL string `toml:"url"`
	// Cmd is a program and its arguments.
	Cmd []string `toml:"cmd"`
	// Timeout is a Go duration such as "30s".
	Timeout string `toml:"timeout"`
}

// TimeoutDuration returns the health-check timeout and whether it is set.
// It assumes the manifest was validated.
func (h Health) TimeoutDuration() (time.Duration, bool) {
	d, err := parseTimeout(h.Timeout)
	if err != nil || d == 0 {
		return 0, false
	}
	return d, true
}

// knownKeys is listed in the error for an unknown key.
const knownKeys = "product, version, upgrade_from, notes, irreversible, hooks.timeout, health.url, health.cmd, health.timeout"

// ParseManifest parses and validates the content of a bundle.toml. Unknown
// keys are an error that names the key, so a misspelt setting is not
// silently ignored. Every error matches [ErrBadManifest] and starts with
// "bundle.toml: ".
func ParseManifest(data []byte) (*Manifest, error) {
	if len(data) > MaxManifestSize {
		return nil, newErr(fmt.Sprintf("%s: larger than %d KiB", ManifestName, MaxManifestSize>>10), ErrBadManifest)
	}
	var m Manifest
	md, err := toml.Decode(string(data), &m)
	if err != nil {
		return nil, newErr(fmt.Sprintf("%s: not valid TOML: %v", ManifestName, err), ErrBadManifest, err)
	}
	if undec := md.Undecoded(); len(undec) > 0 {
		return nil, newErr(fmt.Sprintf("%s: unknown key %q (known keys: %s)", ManifestName, undec[0].String(), knownKeys), ErrBadManifest)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// Validate checks the fields that are set. The error names the field, as
// in `bundle.toml: version "x.y": not a valid version (use semantic
// versioning such as 1.2.3)`, and matches [ErrBadManifest].
func (m *Manifest) Validate() error {
	if err := m.validate(); err != nil {
		return newErr(ManifestName+": "+err.Error(), ErrBadManifest, err)
	}
	return nil
}

func (m *Manifest) validate() error {
	if m.Product != "" {
		if err := ValidateProduct(m.Product); err != nil {
			return err
		}
	}
	if m.Version != "" {
		if err := ValidateVersion(m.Version); err != nil {
			return err
		}
	}
	if m.UpgradeFrom != "" {
		if err := ValidateConstraint(m.UpgradeFrom); err != nil {
			return err
		}
	}
	if _, err := parseTimeout(m.Hooks.Timeout); err != nil {
		return fmt.Errorf("hooks.timeout %q: %w", m.Hooks.Timeout, err)
	}
	return m.Health.validate()
}

func (h Health) validate() error {
	if h.URL != "" && len(h.Cmd) > 0 {
		return errors.New("health: set url or cmd, not both")
	}
	if h.URL != "" {
		u, err := url.Parse(h.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("health.url %q: not an absolute http or https URL", h.URL)
		}
	}
	if len(h.Cmd) > 0 && strings.TrimSpace(h.Cmd[0]) == "" {
		return errors.New("health.cmd: the first element (the program to run) is empty")
	}
	if _, err := parseTimeout(h.Timeout); err != nil {
		return fmt.Errorf("health.timeout %q: %w", h.Timeout, err)
	}
	return nil
}

// parseTimeout parses a positive Go duration; empty gives 0.
func parseTimeout(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, errors.New("not a valid duration (use a Go duration such as 90s or 5m)")
	}
	if d <= 0 {
		return 0, errors.New("must be positive")
	}
	return d, nil
}

var productRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)

// ValidateProduct checks a product name: [a-z0-9][a-z0-9._-]*, at most 64
// characters. The error names the value.
func ValidateProduct(name string) error {
	if name == "" {
		return errors.New("product: empty")
	}
	if len(name) > maxProductLen || !productRE.MatchString(name) {
		return fmt.Errorf("product %q: not a valid product name (use lowercase letters, digits, '.', '_' and '-', starting with a letter or digit, at most %d characters)", name, maxProductLen)
	}
	return nil
}

// ValidateVersion checks a release version: what hashicorp/go-version
// parses, without surrounding space or a leading "v" (the version names a
// directory and a TUF target, so "v1.2.3" and "1.2.3" must not both exist),
// at most 128 characters. The error names the value.
func ValidateVersion(v string) error {
	if v == "" {
		return errors.New("version: empty")
	}
	if strings.HasPrefix(v, "v") || strings.HasPrefix(v, "V") {
		if _, err := version.NewVersion(v[1:]); err == nil {
			return fmt.Errorf("version %q: write it without the leading %q, as %s", v, v[:1], v[1:])
		}
	}
	if len(v) > maxVersionLen || strings.TrimSpace(v) != v {
		return fmt.Errorf("version %q: not a valid version (use semantic versioning such as 1.2.3)", v)
	}
	if _, err := version.NewVersion(v); err != nil {
		return fmt.Errorf("version %q: not a valid version (use semantic versioning such as 1.2.3)", v)
	}
	return nil
}

// ValidateConstraint checks an upgrade_from constraint as hashicorp/go-version
// parses it, e.g. ">= 2.0, < 3.0" or "~> 3.2". The error names the value.
func ValidateConstraint(c string) error {
	if strings.TrimSpace(c) == "" {
		return errors.New("upgrade_from: empty")
	}
	if _, err := version.NewConstraint(c); err != nil {
		return fmt.Errorf("upgrade_from %q: not a valid version constraint (use a list such as \">= 2.0, < 3.0\")", c)
	}
	return nil
}
