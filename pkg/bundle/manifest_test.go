package bundle

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// manifestTests are shared with FuzzParseManifest as seeds.
var manifestTests = []struct {
	name    string
	in      string
	want    *Manifest
	wantErr string // substring of the error; "" means success
}{
	{
		name: "full",
		in: `product = "acme-erp"
version = "3.2.1"
upgrade_from = ">= 3.0, < 3.2.1"
notes = "Hot fix for invoices."
irreversible = true

[hooks]
timeout = "90s"

[health]
cmd = ["/opt/acme/bin/check", "--quick"]
timeout = "45s"
`,
		want: &Manifest{
			Product: "acme-erp", Version: "3.2.1", UpgradeFrom: ">= 3.0, < 3.2.1", Notes: "Hot fix for invoices.",
			Irreversible: true, Hooks: Hooks{Timeout: "90s"},
			Health: Health{Cmd: []string{"/opt/acme/bin/check", "--quick"}, Timeout: "45s"},
		},
	},
	{name: "empty", in: "", want: &Manifest{}},
	{name: "only notes", in: `notes = "flags give product and version"`, want: &Manifest{Notes: "flags give product and version"}},
	{name: "prerelease version", in: `version = "2.0.0-rc.1+build.5"`, want: &Manifest{Version: "2.0.0-rc.1+build.5"}},
	{name: "pessimistic constraint", in: `upgrade_from = "~> 3.2"`, want: &Manifest{UpgradeFrom: "~> 3.2"}},
	{name: "health url", in: "[health]\nurl = \"https://localhost:8443/healthz\"", want: &Manifest{Health: Health{URL: "https://localhost:8443/healthz"}}},
	{name: "bad product", in: `product = "Acme ERP"`, wantErr: `bundle.toml: product "Acme ERP": not a valid product name`},
	{name: "product too long", in: `product = "` + strings.Repeat("a", 65) + `"`, wantErr: `not a valid product name`},
	{name: "product leading dash", in: `product = "-acme"`, wantErr: `product "-acme"`},
	{name: "bad version", in: `version = "x.y"`, wantErr: `bundle.toml: version "x.y": not a valid version (use semantic versioning such as 1.2.3)`},
	{name: "version with v", in: `version = "v1.2.3"`, wantErr: `bundle.toml: version "v1.2.3": write it without the leading "v", as 1.2.3`},
	{name: "version with space", in: `version = " 1.2.3"`, wantErr: `version " 1.2.3": not a valid version`},
	{name: "version with slash", in: `version = "1.2/3"`, wantErr: `not a valid version`},
	{name: "bad constraint", in: `upgrade_from = ">= two"`, wantErr: `bundle.toml: upgrade_from ">= two": not a valid version constraint`},
	{name: "unknown key", in: `prodcut = "acme"`, wantErr: `bundle.toml: unknown key "prodcut"`},
	{name: "unknown nested key", in: "[hooks]\ntimout = \"5m\"", wantErr: `bundle.toml: unknown key "hooks.timout"`},
	{name: "unknown table", in: "[database]\ndriver = \"sqlite\"", wantErr: `unknown key "database`},
	{name: "bad hook duration", in: "[hooks]\ntimeout = \"5 minutes\"", wantErr: `bundle.toml: hooks.timeout "5 minutes": not a valid duration`},
	{name: "negative health duration", in: "[health]\ntimeout = \"-1s\"", wantErr: `bundle.toml: health.timeout "-1s": must be positive`},
	{name: "health url and cmd", in: "[health]\nurl = \"http://x/\"\ncmd = [\"true\"]", wantErr: `health: set url or cmd, not both`},
	{name: "health url not http", in: "[health]\nurl = \"ftp://x/\"", wantErr: `health.url "ftp://x/": not an absolute http or https URL`},
	{name: "health cmd empty program", in: "[health]\ncmd = [\"\"]", wantErr: `health.cmd: the first element`},
	{name: "wrong type", in: `version = 1.2`, wantErr: `bundle.toml: not valid TOML`},
	{name: "not TOML", in: "this is not toml\n", wantErr: `bundle.toml: not valid TOML`},
	{name: "binary garbage", in: "\x00\x01\x02", wantErr: `bundle.toml: not valid TOML`},
	{name: "too large", in: "notes = \"" + strings.Repeat("x", MaxManifestSize) + "\"", wantErr: `bundle.toml: larger than 64 KiB`},
}

func TestParseManifest(t *testing.T) {
	for _, tt := range manifestTests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseManifest([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("ParseManifest = %+v, want error containing %q", got, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("error %q does not contain %q", err, tt.wantErr)
				}
				if !errors.Is(err, ErrBadManifest) {
					t.Errorf("error %q is not ErrBadManifest", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseManifest: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseManifest = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestValidateProduct(t *testing.T) {
	for _, tt := range []struct {
		in      string
		wantErr bool
	}{
		{"acme-erp", false},
		{"updateagent", false},
		{"a", false},
		{"0day", false},
		{"acme.erp_2", false},
		{strings.Repeat("a", 64), false},
		{strings.Repeat("a", 65), true},
		{"", true},
		{"Acme", true},
		{"-acme", true},
		{".acme", true},
		{"acme erp", true},
		{"acme/erp", true},
		{"acmé", true},
	} {
		err := ValidateProduct(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ValidateProduct(%q) = %v, want error %v", tt.in, err, tt.wantErr)
		}
		if err != nil && tt.in != "" && !strings.Contains(err.Error(), `"`+tt.in+`"`) {
			t.Errorf("ValidateProduct(%q) = %q, does not name the value", tt.in, err)
		}
	}
}

func TestValidateVersion(t *testing.T) {
	for _, tt := range []struct {
		in      string
		wantErr bool
	}{
		{"1.2.3", false},
		{"1.2", false},
		{"10", false},
		{"2.0.0-rc.1", false},
		{"2.0.0+build.7", false},
		{"", true},
		{"x.y", true},
		{"v1.2.3", true},
		{"V1.2.3", true},
		{"1.2.3 ", true},
		{"1..2", true},
		{"1.2.3/evil", true},
		{"99999999999999999999.0", true},
		{"1." + strings.Repeat("1", 130), true},
	} {
		err := ValidateVersion(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ValidateVersion(%q) = %v, want error %v", tt.in, err, tt.wantErr)
		}
	}
}

func TestValidateConstraint(t *testing.T) {
	for _, tt := range []struct {
		in      string
		wantErr bool
	}{
		{">= 2.0, < 3.0", false},
		{"~> 3.2", false},
		{"= 1.0.0", false},
		{"!= 1.0.1", false},
		{"", true},
		{" ", true},
		{">= two", true},
		{">= 2.0,", true},
		{"=> 2.0", true},
	} {
		err := ValidateConstraint(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ValidateConstraint(%q) = %v, want error %v", tt.in, err, tt.wantErr)
		}
	}
}

func TestTimeouts(t *testing.T) {
	var m Manifest
	if got := m.Hooks.TimeoutDuration(); got != DefaultHookTimeout {
		t.Errorf("default hook timeout = %v, want %v", got, DefaultHookTimeout)
	}
	if _, ok := m.Health.TimeoutDuration(); ok {
		t.Error("unset health timeout reported as set")
	}
	m.Hooks.Timeout, m.Health.Timeout = "90s", "1m"
	if got := m.Hooks.TimeoutDuration(); got != 90*time.Second {
		t.Errorf("hook timeout = %v, want 90s", got)
	}
	if got, ok := m.Health.TimeoutDuration(); !ok || got != time.Minute {
		t.Errorf("health timeout = %v %v, want 1m true", got, ok)
	}
}

func TestValidateNamesField(t *testing.T) {
	m := &Manifest{Product: "acme", Version: "1.0", UpgradeFrom: "< x"}
	err := m.Validate()
	if err == nil || !errors.Is(err, ErrBadManifest) || !strings.HasPrefix(err.Error(), `bundle.toml: upgrade_from "< x"`) {
		t.Fatalf("Validate = %v", err)
	}
}
