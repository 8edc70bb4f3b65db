package selfupdate

import (
	"io"
	"os"
	"path/filepath"

	"github.com/minio/selfupdate"
)

// replace has minio/selfupdate write the checked binary beside exe and
// commit it: Windows does not let a running executable be replaced, only
// renamed away, which is what CommitBinary does (the old one is left as
// .<name>.replaced, which the next replace overwrites; the copy Swap keeps
// at OldPath is another file).
func replace(exe string, r io.Reader, sum []byte, mode os.FileMode) error {
	replaced := filepath.Join(filepath.Dir(exe), "."+filepath.Base(exe)+".replaced")
	return selfupdate.Apply(r, selfupdate.Options{TargetPath: exe, TargetMode: mode, Checksum: sum, OldSavePath: replaced})
}
