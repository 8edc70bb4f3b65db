package bundle

import (
	"fmt"
	"path"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Top-level entries of a bundle.
const (
	FilesDir      = "files"
	MigrationsDir = "migrations"
	HooksDir      = "hooks"
)

// Hook names: the only files hooks/ may hold.
const (
	HookPreStop   = "pre-stop"
	HookPostStage = "post-stage"
	HookPostStart = "post-start"
)

const (
	maxPathLen      = 4096
	maxComponentLen = 255
)

var migrationRE = regexp.MustCompile(`^([0-9]{4,})_([a-z0-9_]+)\.(up|down)\.sql$`)

// ValidateMigrationName checks the name of a file in migrations/:
// NNNN_name.up.sql or NNNN_name.down.sql (at least four digits; name in
// lowercase letters, digits and '_').
func ValidateMigrationName(name string) error {
	if !migrationRE.MatchString(name) {
		return fmt.Errorf("migration %q: not a valid migration name (use NNNN_name.up.sql or NNNN_name.down.sql, e.g. 0001_create_users.up.sql)", name)
	}
	return nil
}

// ValidateHookName checks the name of a file in hooks/: one of pre-stop,
// post-stage and post-start.
func ValidateHookName(name string) error {
	switch name {
	case HookPreStop, HookPostStage, HookPostStart:
		return nil
	}
	return fmt.Errorf("hook %q: not a known hook (use %s, %s or %s)", name, HookPreStop, HookPostStage, HookPostStart)
}

// cleanEntryName turns a tar entry name into a clean slash path relative to
// the bundle root. It strips one leading "./" and a trailing "/", and
// returns "" for the root itself ("." or "./"). Everything that could
// address something outside the root, or that different systems would read
// differently, is refused with ErrUnsafePath.
func cleanEntryName(name string) (string, error) {
	if name == "" {
		return "", entryErr(name, ErrUnsafePath, "empty name")
	}
	if strings.IndexByte(name, 0) >= 0 {
		return "", entryErr(name, ErrUnsafePath, "name contains a NUL byte")
	}
	if strings.IndexByte(name, '\\') >= 0 {
		return "", entryErr(name, ErrUnsafePath, "name contains a backslash")
	}
	if !utf8.ValidString(name) {
		return "", entryErr(name, ErrUnsafePath, "name is not valid UTF-8")
	}
	if strings.HasPrefix(name, "/") || isWindowsAbs(name) {
		return "", entryErr(name, ErrUnsafePath, "absolute path")
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return "", entryErr(name, ErrUnsafePath, "name contains a control character")
		}
	}
	p := strings.TrimPrefix(name, "./")
	p = strings.TrimSuffix(p, "/")
	if p == "" || p == "." {
		return "", nil
	}
	if strings.HasPrefix(p, "/") {
		return "", entryErr(name, ErrUnsafePath, "absolute path")
	}
	for _, c := range strings.Split(p, "/") {
		if c == ".." {
			return "", entryErr(name, ErrUnsafePath, "path escapes the bundle")
		}
	}
	if path.Clean(p) != p {
		return "", entryErr(name, ErrUnsafePath, "path is not clean (empty, \".\" or repeated components)")
	}
	if len(p) > maxPathLen {
		return "", entryErr(name, ErrUnsafePath, "path longer than %d bytes", maxPathLen)
	}
	for _, c := range strings.Split(p, "/") {
		if len(c) > maxComponentLen {
			return "", entryErr(name, ErrUnsafePath, "path component longer than %d bytes", maxComponentLen)
		}
	}
	return p, nil
}

// isWindowsAbs reports whether p starts with a drive letter ("C:").
func isWindowsAbs(p string) bool {
	return len(p) >= 2 && p[1] == ':' && ('a' <= p[0] && p[0] <= 'z' || 'A' <= p[0] && p[0] <= 'Z')
}

// checkLayout checks that an entry of kind k at the clean path p belongs in
// a bundle. Link kinds are checked for where they may appear; their targets
// are checked by the tree.
func checkLayout(p string, k kind) error {
	top, rest, nested := strings.Cut(p, "/")
	switch top {
	case ManifestName:
		if nested {
			return entryErr(p, ErrBadLayout, "%s must be a file", ManifestName)
		}
		if k != kindFile {
			return entryErr(p, ErrBadLayout, "%s must be a regular file, not a %s", ManifestName, k)
		}
		return nil
	case FilesDir:
		if !nested && k != kindDir {
			return entryErr(p, ErrBadLayout, "%s/ must be a directory, not a %s", FilesDir, k)
		}
		return nil
	case MigrationsDir, HooksDir:
		if !nested {
			if k != kindDir {
				return entryErr(p, ErrBadLayout, "%s/ must be a directory, not a %s", top, k)
			}
			return nil
		}
		if strings.Contains(rest, "/") || (k != kindFile && k != kindHardlink) {
			return entryErr(p, ErrBadLayout, "%s/ may hold only regular files, no directories or symlinks", top)
		}
		var err error
		if top == MigrationsDir {
			err = ValidateMigrationName(rest)
		} else {
			err = ValidateHookName(rest)
		}
		if err != nil {
			return &EntryError{Entry: p, Reason: err.Error(), Err: ErrBadLayout}
		}
		return nil
	}
	return entryErr(p, ErrBadLayout, "unknown top-level entry (a bundle holds only %s, %s/, %s/ and %s/; is this the right directory?)",
		ManifestName, FilesDir, MigrationsDir, HooksDir)
}

// fold maps a path to a key that is equal for names that differ only in
// case, so that names colliding on case-insensitive file systems (Windows,
// macOS) are caught.
func fold(s string) string {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return strings.ToLower(s)
	}
	return strings.Map(func(r rune) rune {
		// The smallest rune of r's case-folding orbit stands for all of them.
		lo := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			lo = min(lo, f)
		}
		return lo
	}, s)
}
