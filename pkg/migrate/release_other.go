//go:build !unix

package migrate

// holdOld does nothing where an open file cannot be renamed over
// (Windows): the rename frees the old file itself.
func holdOld(string) (release func()) { return func() {} }
