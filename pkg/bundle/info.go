package bundle

import "io/fs"

// File is one entry of a bundle.
type File struct {
	// Path is the slash-separated path inside the bundle, e.g.
	// "files/bin/app" or "migrations/0001_init.up.sql".
	Path string
	// Size is the content size of a regular file; 0 for others.
	Size int64
	// Mode holds the type bits (fs.ModeDir, fs.ModeSymlink) and the
	// normalised permissions: 0755 for directories and executables, 0644
	// for other files, 0777 for symlinks.
	Mode fs.FileMode
	// SHA256 is the hex SHA-256 of a regular file's content, set by
	// [Unpack]; [Scan] leaves it empty.
	SHA256 string
	// LinkTarget is a symlink's target, relative to its directory.
	LinkTarget string
}

// Info describes a valid bundle.
type Info struct {
	// Manifest is the parsed bundle.toml, nil when the bundle has none.
	Manifest *Manifest
	// Files lists every entry, directories (also those only implied by
	// their contents) and the top-level ones included, sorted by Path. A
	// hard link appears as a regular file with its target's size and hash.
	Files []File
	// Migrations lists the file names in migrations/, in the order they
	// apply (by number, up before down).
	Migrations []string
	// Hooks lists the hooks present (e.g. "pre-stop"), sorted.
	Hooks []string
	// TotalSize is the sum of the uncompressed sizes of all entries.
	TotalSize int64
}
