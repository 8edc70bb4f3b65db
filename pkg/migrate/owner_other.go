//go:build !unix

package migrate

import "os"

// copyOwner does nothing where files have no Unix owner (Windows: the
// restored file inherits the directory's ACL).
func copyOwner(string, os.FileInfo) error { return nil }
