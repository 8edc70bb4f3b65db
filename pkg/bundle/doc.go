// Package bundle reads and writes installer bundles: the gzip'd tar that
// carries one release of a product from the release team to the sites.
//
// A bundle is built from a directory laid out as
//
//	bundle.toml     optional manifest (see [Manifest])
//	files/          payload, installed as <install_dir>/releases/<version>/
//	migrations/     NNNN_name.up.sql and NNNN_name.down.sql (optional)
//	hooks/          optional executables: pre-stop, post-stage, post-start
//
// Any other top-level entry is refused, which catches packing the wrong
// directory.
//
// [Pack] writes such a directory as a deterministic .tar.gz: the same tree
// gives the same bytes whatever the file times, owners or umask. [Scan]
// validates a bundle stream without writing anything (the server runs it
// while an upload streams in); [Unpack] extracts one safely through an
// [os.Root], so no entry can write outside the destination. Both refuse
// path traversal, escaping symlinks and hard links, special files,
// duplicates and entries beyond the [Limits]; every refusal names the entry
// and matches one of the sentinel errors (ErrNotBundle, ErrBadLayout,
// ErrUnsafePath, ErrUnsupportedType, ErrTooLarge, ErrBadManifest) with
// [errors.Is].
package bundle
