// Package buildinfo carries the version stamped into both binaries at build
// time (make build sets it with -ldflags from git describe).
package buildinfo

import "runtime/debug"

// Version is set with -ldflags "-X github.com/dropless/dropless/pkg/buildinfo.Version=...".
var Version = ""

// String returns the version, falling back to the module build info.
func String() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "0.0.0-dev"
}
