// Package config reads and validates the agent's TOML config file (the keys
// CONTRACT.md lists). Every error names the key and says what is wrong.
package config

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/dropless/dropless/pkg/protocol"
)

// Config is the agent's configuration.
type Config struct {
	Server string `toml:"server"`
	// Servers, instead of server, lists several URLs of one update
	// server (replicas): the agent talks to one and, when it does not
	// answer or answers 5xx, moves on to the next (TUF metadata and
	// targets move with it unless metadata_url/targets_url are set).
	// Server is then the first.
	Servers      []string `toml:"servers"`
	Site         string   `toml:"site"`
	Client       string   `toml:"client"`
	Product      string   `toml:"product"`
	EnrollToken  string   `toml:"enroll_token"`
	RootSHA256   string   `toml:"root_sha256"`
	InstallDir   string   `toml:"install_dir"`
	DataDir      string   `toml:"data_dir"`
	PollInterval Duration `toml:"poll_interval"`
	// KeepReleases is how many release directories stay installed
	// (the running one included). Default 3.
	KeepReleases int `toml:"keep_releases"`
	// BundleCacheSize bounds the bundles kept in data_dir/bundles as bases
	// for delta updates (default 2GiB; "0": keep none, no deltas).
	BundleCacheSize Size `toml:"bundle_cache_size"`
	// MetadataURL and TargetsURL override where the TUF repository is
	// read (a mirror); by default <server>/tuf/metadata/ and /tuf/targets/.
	MetadataURL string `toml:"metadata_url"`
	TargetsURL  string `toml:"targets_url"`
	// DriftIgnore lists paths in a release directory that are not drift:
	// files the application itself writes there. A pattern (path.Match
	// syntax, slash-separated) without a slash matches a name at any
	// depth ("*.log"), one with a slash the whole path from the release
	// directory ("data/*.tmp"), one ending in "/" a directory and all it
	// holds ("logs/"). Default: none.
	DriftIgnore []string `toml:"drift_ignore"`
	// CAFile is a PEM file of CA certificates trusted, besides the
	// system's, for an https:// server.
	CAFile string `toml:"ca_file"`
	// AllowInsecureHTTP permits plain http:// to a server that is not on
	// loopback. The TUF metadata still protects what is installed, but
	// the agent's credential and reports travel in clear.
	AllowInsecureHTTP bool `toml:"allow_insecure_http"`
	// AllowDowngrade permits installing a version older than the
	// installed one (support must also ask for it). Default false: a
	// server, or anyone between it and the agent, cannot move the site
	// back to an older release.
	AllowDowngrade bool `toml:"allow_downgrade"`
	// SelfUpdateTrial is how long a new agent binary has, after the
	// swap, to start and check in with the server before the old binary
	// is put back. Default 2m.
	SelfUpdateTrial Duration `toml:"self_update_trial"`

	App      App       `toml:"app"`
	Database *Database `toml:"database"`
	// Data lists the app's other state ([[data]]): files or directories
	// (uploads, a second database file) that the engine snapshots while
	// the app is stopped and puts back exactly on rollback.
	Data []Data `toml:"data"`
}

// Data is one [[data]] entry: a file or directory of the app's state.
type Data struct {
	// Path is absolute; it need not exist (a rollback then removes what
	// the new version created there).
	Path string `toml:"path"`
}

// App is how the managed application is stopped, started and checked.
type App struct {
	Service       string   `toml:"service"`
	Start         []string `toml:"start"`
	Stop          []string `toml:"stop"`
	HealthURL     string   `toml:"health_url"`
	HealthCmd     []string `toml:"health_cmd"`
	HealthTimeout Duration `toml:"health_timeout"`
	// CommandTimeout bounds the start and stop commands. Default 2m.
	CommandTimeout Duration `toml:"command_timeout"`
}

// Database is where a bundle's migrations apply.
type Database struct {
	Driver string `toml:"driver"`
	DSN    string `toml:"dsn"`
	// SchemaDrift is what a schema changed by hand (a SQL drop) does:
	// "block" (the default: reported as drift, upgrades need support to
	// accept it), "report" (reported, upgrades go ahead) or "off" (not
	// checked), for apps that change their own schema as they run.
	SchemaDrift string `toml:"schema_drift"`
	// BackupVerify is how the backup of a SQLite database, made before
	// migrating and restored on rollback, is verified: "checksum" (the
	// default: the copy's sha256 and PRAGMA quick_check, about the cost
	// of a file copy) or "fingerprint" (also integrity_check and a hash
	// of every row of the database and the copy: several times slower).
	// PostgreSQL databases are not copied: it does not apply to them.
	BackupVerify string `toml:"backup_verify"`
}

// Backup verification settings (Database.BackupVerify), as
// migrate.SetBackupVerify takes them.
const (
	BackupVerifyChecksum    = "checksum"
	BackupVerifyFingerprint = "fingerprint"
)

// Schema drift settings (Database.SchemaDrift).
const (
	SchemaDriftBlock  = "block"
	SchemaDriftReport = "report"
	SchemaDriftOff    = "off"
)

// Duration is a time.Duration written as "30s" in TOML.
type Duration struct{ time.Duration }

// UnmarshalText parses a Go duration.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration (write it like 30s, 5m or 1h)", b)
	}
	d.Duration = v
	return nil
}

// MarshalText writes the duration as Go does.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Defaults.
const (
	DefaultPollInterval    = 30 * time.Second
	DefaultHealthTimeout   = 30 * time.Second
	DefaultCommandTimeout  = 2 * time.Minute
	DefaultKeepReleases    = 3
	DefaultSelfUpdateTrial = 2 * time.Minute
)

// DefaultPath is where the agent's packages install its config, and what
// `updateagent status` reads without --config:
// /etc/updateagent/agent.toml; on Windows
// %ProgramData%\updateagent\agent.toml.
func DefaultPath() string { return defaultPath(runtime.GOOS, os.Getenv("ProgramData")) }

func defaultPath(goos, programData string) string {
	if goos != "windows" {
		return "/etc/updateagent/agent.toml"
	}
	if programData == "" {
		programData = `C:\ProgramData`
	}
	return strings.TrimRight(programData, `\`) + `\updateagent\agent.toml`
}

// Load reads, defaults and validates the config file at path.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	c, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Parse parses, defaults and validates a config.
func Parse(b []byte) (*Config, error) {
	var c Config
	md, err := toml.Decode(string(b), &c)
	if err != nil {
		return nil, err
	}
	if und := md.Undecoded(); len(und) > 0 {
		return nil, fmt.Errorf("unknown key %q: check the spelling (see the agent's README)", und[0].String())
	}
	if c.Server != "" && len(c.Servers) > 0 {
		return nil, errors.New("server and servers: give one of them (servers = [...] for several replicas)")
	}
	c.setDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

func (c *Config) setDefaults() {
	if c.PollInterval.Duration == 0 {
		c.PollInterval.Duration = DefaultPollInterval
	}
	if c.SelfUpdateTrial.Duration == 0 {
		c.SelfUpdateTrial.Duration = DefaultSelfUpdateTrial
	}
	if c.App.HealthTimeout.Duration == 0 {
		c.App.HealthTimeout.Duration = DefaultHealthTimeout
	}
	if c.App.CommandTimeout.Duration == 0 {
		c.App.CommandTimeout.Duration = DefaultCommandTimeout
	}
	if c.KeepReleases == 0 {
		c.KeepReleases = DefaultKeepReleases
	}
	for i, u := range c.Servers {
		c.Servers[i] = strings.TrimRight(u, "/")
	}
	if c.Server == "" && len(c.Servers) > 0 {
		c.Server = c.Servers[0]
	}
	c.Server = strings.TrimRight(c.Server, "/")
	if c.MetadataURL == "" && c.Server != "" {
		c.MetadataURL = c.Server + "/tuf/metadata/"
	}
	if c.TargetsURL == "" && c.Server != "" {
		c.TargetsURL = c.Server + "/tuf/targets/"
	}
}

// Validate checks every key and names the first bad one.
func (c *Config) Validate() error {
	for _, u := range c.ServerURLs() {
		if err := checkURL("server", u); err != nil {
			return err
		}
		if insecureHTTP(u) && !c.AllowInsecureHTTP {
			return fmt.Errorf("server %q: plain http:// to a host that is not loopback sends the agent's credential in clear: use https:// (with ca_file for your own CA), or set allow_insecure_http = true", u)
		}
	}
	if c.CAFile != "" && !filepath.IsAbs(c.CAFile) {
		return fmt.Errorf("ca_file %q: must be an absolute path", c.CAFile)
	}
	// In a fixed order: the first bad key is always the same one.
	for _, kv := range [][2]string{{"site", c.Site}, {"client", c.Client}, {"product", c.Product}} {
		key, v := kv[0], kv[1]
		if v == "" {
			return fmt.Errorf("%s: missing (set %s = \"...\")", key, key)
		}
		if protocol.ValidName(key, v) != nil {
			return fmt.Errorf("%s %q: use lower-case letters, digits, '.', '_' and '-', at most 64", key, v)
		}
	}
	if c.RootSHA256 == "" {
		return errors.New("root_sha256: missing (the server prints it: updateserver root sha256)")
	}
	if b, err := hex.DecodeString(c.RootSHA256); err != nil || len(b) != 32 {
		return fmt.Errorf("root_sha256 %q: not a hex SHA-256 (64 hex digits)", c.RootSHA256)
	}
	for key, v := range map[string]string{"install_dir": c.InstallDir, "data_dir": c.DataDir} {
		if v == "" {
			return fmt.Errorf("%s: missing", key)
		}
		if !filepath.IsAbs(v) {
			return fmt.Errorf("%s %q: must be an absolute path", key, v)
		}
	}
	if filepath.Clean(c.InstallDir) == filepath.Clean(c.DataDir) {
		return errors.New("data_dir: must differ from install_dir")
	}
	if c.PollInterval.Duration < time.Second {
		return fmt.Errorf("poll_interval %v: use at least 1s", c.PollInterval.Duration)
	}
	if c.SelfUpdateTrial.Duration < 5*time.Second {
		return fmt.Errorf("self_update_trial %v: use at least 5s (a new agent needs time to start and check in)", c.SelfUpdateTrial.Duration)
	}
	if c.KeepReleases < 2 {
		return fmt.Errorf("keep_releases %d: keep at least 2 (the running release and the one to roll back to)", c.KeepReleases)
	}
	if err := checkURL("metadata_url", c.MetadataURL); err != nil {
		return err
	}
	if err := checkURL("targets_url", c.TargetsURL); err != nil {
		return err
	}
	if err := c.App.validate(); err != nil {
		return err
	}
	for _, p := range c.DriftIgnore {
		pat := strings.TrimSuffix(p, "/")
		if pat == "" {
			return fmt.Errorf("drift_ignore %q: empty pattern", p)
		}
		if _, err := path.Match(pat, ""); err != nil {
			return fmt.Errorf("drift_ignore %q: not a valid pattern (write it like \"*.log\" or \"logs/\")", p)
		}
	}
	if c.Database != nil {
		switch c.Database.Driver {
		case "sqlite", "postgres":
		default:
			return fmt.Errorf("database.driver %q: use sqlite or postgres", c.Database.Driver)
		}
		if c.Database.DSN == "" {
			return errors.New("database.dsn: missing")
		}
		switch c.Database.SchemaDrift {
		case "":
			c.Database.SchemaDrift = SchemaDriftBlock
		case SchemaDriftBlock, SchemaDriftReport, SchemaDriftOff:
		default:
			return fmt.Errorf("database.schema_drift %q: use block, report or off", c.Database.SchemaDrift)
		}
		switch c.Database.BackupVerify {
		case "":
			c.Database.BackupVerify = BackupVerifyChecksum
		case BackupVerifyChecksum, BackupVerifyFingerprint:
		default:
			return fmt.Errorf("database.backup_verify %q: use checksum (the default) or fingerprint", c.Database.BackupVerify)
		}
	}
	return c.validateData()
}

// validateData checks the [[data]] paths: absolute, none inside another,
// none holding or inside what the agent manages itself (data_dir,
// install_dir's releases/ and current), none holding the SQLite
// [database] (backed up on its own).
func (c *Config) validateData() error {
	type owned struct{ path, what string }
	own := []owned{
		{filepath.Clean(c.DataDir), "data_dir"},
		{filepath.Join(c.InstallDir, "releases"), "install_dir's releases/"},
		{filepath.Join(c.InstallDir, "current"), "install_dir's current"},
	}
	var dbFile string
	if c.Database != nil && c.Database.Driver == "sqlite" {
		dbFile = SQLitePath(c.Database.DSN)
	}
	seen := make([]string, 0, len(c.Data))
	for i, d := range c.Data {
		key := fmt.Sprintf("data[%d].path", i)
		if d.Path == "" {
			return fmt.Errorf("%s: missing (write [[data]] path = \"/abs/path\")", key)
		}
		if !filepath.IsAbs(d.Path) {
			return fmt.Errorf("%s %q: must be an absolute path", key, d.Path)
		}
		p := filepath.Clean(d.Path)
		if p == filepath.Dir(p) {
			return fmt.Errorf("%s %q: the root of a file system cannot be app data; name the app's own directory", key, d.Path)
		}
		if within(p, filepath.Clean(c.InstallDir)) {
			return fmt.Errorf("%s %q: holds install_dir %s, whose releases the agent manages itself; name the app's data directories inside it instead", key, d.Path, c.InstallDir)
		}
		for _, o := range own {
			if within(o.path, p) || within(p, o.path) {
				return fmt.Errorf("%s %q: overlaps %s (%s), which the agent manages itself; keep the app's data elsewhere", key, d.Path, o.what, o.path)
			}
		}
		if dbFile != "" && (within(p, dbFile) || within(dbFile, p)) {
			return fmt.Errorf("%s %q: holds the [database] file %s, which the agent backs up on its own; list the app's other files instead", key, d.Path, dbFile)
		}
		for j, q := range seen {
			if within(q, p) || within(p, q) {
				return fmt.Errorf("%s %q overlaps data[%d].path %q: list each path once, none inside another", key, d.Path, j, c.Data[j].Path)
			}
		}
		seen = append(seen, p)
	}
	return nil
}

// within reports whether p is dir or inside it (both clean and absolute).
func within(dir, p string) bool {
	if p == dir {
		return true
	}
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// SQLitePath returns the file path of a SQLite DSN (a path, optionally
// followed by ?parameters, or a file: URI), "" when it names none.
func SQLitePath(dsn string) string {
	p := dsn
	if strings.HasPrefix(dsn, "file:") {
		u, err := url.Parse(dsn)
		if err != nil {
			return ""
		}
		p = u.Path
		if p == "" {
			p = u.Opaque
		}
	} else if i := strings.IndexByte(p, '?'); i >= 0 {
		p = p[:i]
	}
	if p == "" || p == ":memory:" || !filepath.IsAbs(filepath.FromSlash(p)) {
		return ""
	}
	return filepath.Clean(filepath.FromSlash(p))
}

func (a App) validate() error {
	hasCmds := len(a.Start) > 0 || len(a.Stop) > 0
	switch {
	case a.Service != "" && hasCmds:
		return errors.New("app: set either service or start and stop, not both")
	case a.Service == "" && (len(a.Start) == 0 || len(a.Stop) == 0):
		return errors.New("app: set service (an OS service name) or both start and stop (commands as arrays)")
	}
	for key, argv := range map[string][]string{"app.start": a.Start, "app.stop": a.Stop, "app.health_cmd": a.HealthCmd} {
		if len(argv) > 0 && argv[0] == "" {
			return fmt.Errorf("%s: the first element must be a program", key)
		}
	}
	switch {
	case a.HealthURL == "" && len(a.HealthCmd) == 0:
		return errors.New("app: set health_url (answers 2xx when healthy) or health_cmd (exits 0 when healthy)")
	case a.HealthURL != "" && len(a.HealthCmd) > 0:
		return errors.New("app: set health_url or health_cmd, not both")
	case a.HealthURL != "":
		if err := checkURL("app.health_url", a.HealthURL); err != nil {
			return err
		}
	}
	if a.HealthTimeout.Duration <= 0 {
		return errors.New("app.health_timeout: must be positive")
	}
	if a.CommandTimeout.Duration <= 0 {
		return errors.New("app.command_timeout: must be positive")
	}
	return nil
}

// InsecureHTTP reports whether the server is plain http:// on a host that
// is not loopback (localhost, 127.0.0.0/8, ::1).
func (c *Config) InsecureHTTP() bool {
	for _, u := range c.ServerURLs() {
		if insecureHTTP(u) {
			return true
		}
	}
	return false
}

// ServerURLs is the servers the agent may talk to: servers, or server
// alone.
func (c *Config) ServerURLs() []string {
	if len(c.Servers) > 0 {
		return c.Servers
	}
	return []string{c.Server}
}

// TUFFollowsServer says whether the TUF repository is read from the
// server the agent talks to now: several servers, and neither
// metadata_url nor targets_url set to a mirror.
func (c *Config) TUFFollowsServer() bool {
	return len(c.Servers) > 1 && c.MetadataURL == c.Servers[0]+"/tuf/metadata/" && c.TargetsURL == c.Servers[0]+"/tuf/targets/"
}

func insecureHTTP(s string) bool {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "http" {
		return false
	}
	return !isLoopback(u.Hostname())
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func checkURL(key, v string) error {
	if v == "" {
		return fmt.Errorf("%s: missing", key)
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%s %q: not an http:// or https:// URL", key, v)
	}
	return nil
}
