package bundle

import (
	"io/fs"
	"path"
	"slices"
	"strings"
)

// kind is the type of a bundle entry.
type kind uint8

const (
	kindDir kind = iota + 1
	kindFile
	kindSymlink
	kindHardlink
)

func (k kind) String() string {
	switch k {
	case kindDir:
		return "directory"
	case kindFile:
		return "regular file"
	case kindSymlink:
		return "symlink"
	case kindHardlink:
		return "hard link"
	}
	return "unknown entry"
}

const (
	// maxLinkHops bounds how many symlinks one path may pass through, as
	// the kernel does (Linux MAXSYMLINKS).
	maxLinkHops = 40
	// resolveBudget bounds the work spent following symlinks in one bundle
	// (bytes of path looked up), so a hostile bundle cannot stall a scan.
	resolveBudget = 1 << 30
)

// node is one entry of a bundle, checked.
type node struct {
	path     string // clean slash path relative to the bundle root
	kind     kind
	implicit bool        // a directory created only as the parent of other entries
	size     int64       // content size of regular files and hard links
	mode     fs.FileMode // normalised: type bits and 0644, 0755 or 0777
	target   string      // symlink: target as stored; hard link: clean path of the file
	sha256   string      // hex; set by Unpack for files and hard links
	link     *node       // hard link: the regular file it names
}

// tree holds every entry seen so far and enforces the rules that involve
// more than one entry: no duplicates, no entry under a symlink or a file,
// links that stay inside, names that differ only in case.
type tree struct {
	nodes  map[string]*node  // by exact path
	folded map[string]string // fold(path) -> exact path
	order  []*node
	links  []*node // symlinks, checked again by finish
}

func newTree() *tree {
	return &tree{nodes: make(map[string]*node), folded: make(map[string]string)}
}

// normMode returns the normalised mode of an entry at p of kind k whose
// archived permission bits are perm.
func normMode(p string, k kind, perm fs.FileMode) fs.FileMode {
	switch k {
	case kindDir:
		return fs.ModeDir | 0o755
	case kindSymlink:
		return fs.ModeSymlink | 0o777
	}
	if strings.HasPrefix(p, HooksDir+"/") || perm&0o111 != 0 {
		return 0o755
	}
	return 0o644
}

// add checks n against the layout and the entries before it, and records it.
func (t *tree) add(n *node) error {
	if err := checkLayout(n.path, n.kind); err != nil {
		return err
	}
	if err := t.addParents(n.path, n.path); err != nil {
		return err
	}
	ex, err := t.lookup(n.path, n.path)
	if err != nil {
		return err
	}
	if ex != nil {
		if ex.implicit && n.kind == kindDir {
			ex.implicit = false
			return nil
		}
		return entryErr(n.path, ErrUnsafePath, "duplicate entry")
	}
	switch n.kind {
	case kindSymlink:
		if err := t.checkSymlink(n); err != nil {
			return err
		}
		t.links = append(t.links, n)
	case kindHardlink:
		if err := t.checkHardlink(n); err != nil {
			return err
		}
	}
	t.insert(n)
	return nil
}

// addParents checks that every parent of p is a directory, never a symlink
// (an entry under it would be written through the link) nor a file, and
// records missing parents as implicit directories. Since a node is only
// recorded once its parent is, an existing parent ends the walk.
func (t *tree) addParents(entry, p string) error {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return nil
	}
	parent := p[:i]
	pn, err := t.lookup(entry, parent)
	if err != nil {
		return err
	}
	switch {
	case pn == nil:
		if err := t.addParents(entry, parent); err != nil {
			return err
		}
		t.insert(&node{path: parent, kind: kindDir, implicit: true, mode: fs.ModeDir | 0o755})
	case pn.kind == kindSymlink:
		return entryErr(entry, ErrUnsafePath, "parent %q is a symlink; an entry under it would be written through the link", parent)
	case pn.kind != kindDir:
		return entryErr(entry, ErrUnsafePath, "parent %q is a %s, not a directory", parent, pn.kind)
	}
	return nil
}

// lookup returns the node at p, nil if there is none, or an error naming
// entry when p differs only in case from an existing entry.
func (t *tree) lookup(entry, p string) (*node, error) {
	if n := t.nodes[p]; n != nil {
		return n, nil
	}
	if other, ok := t.folded[fold(p)]; ok {
		if entry == p {
			return nil, entryErr(entry, ErrUnsafePath, "conflicts with %q (names that differ only in case collide on Windows and macOS)", other)
		}
		return nil, entryErr(entry, ErrUnsafePath, "%q conflicts with %q: names that differ only in case collide on Windows and macOS", p, other)
	}
	return nil, nil
}

func (t *tree) insert(n *node) {
	t.nodes[n.path] = n
	t.folded[fold(n.path)] = n.path
	t.order = append(t.order, n)
}

func (t *tree) checkSymlink(n *node) error {
	target := n.target
	switch {
	case target == "":
		return entryErr(n.path, ErrUnsafePath, "symlink with an empty target")
	case strings.IndexByte(target, 0) >= 0:
		return entryErr(n.path, ErrUnsafePath, "symlink target contains a NUL byte")
	case strings.IndexByte(target, '\\') >= 0:
		return entryErr(n.path, ErrUnsafePath, "symlink target %q contains a backslash", target)
	case strings.HasPrefix(target, "/") || isWindowsAbs(target):
		return entryErr(n.path, ErrUnsafePath, "symlink target %q is absolute; use a relative target inside %s/", target, FilesDir)
	case len(target) > maxPathLen:
		return entryErr(n.path, ErrUnsafePath, "symlink target longer than %d bytes", maxPathLen)
	}
	budget := int64(0)
	return t.resolve(n, false, &budget)
}

func (t *tree) checkHardlink(n *node) error {
	tp, err := cleanEntryName(n.target)
	if err != nil || tp == "" {
		return entryErr(n.path, ErrUnsafePath, "hard link target %q is not a path inside the bundle", n.target)
	}
	tn := t.nodes[tp]
	if tn == nil || tn.kind == kindDir && tn.implicit {
		return entryErr(n.path, ErrUnsafePath, "hard link target %q is not an earlier entry of the bundle", n.target)
	}
	if tn.kind == kindHardlink {
		tn = tn.link
	}
	if tn.kind != kindFile {
		return entryErr(n.path, ErrUnsafePath, "hard link target %q is a %s, not a regular file", n.target, tn.kind)
	}
	top, _, _ := strings.Cut(n.path, "/")
	ttop, _, _ := strings.Cut(tn.path, "/")
	if top != ttop || tn.path == ManifestName {
		return entryErr(n.path, ErrUnsafePath, "hard link target %q is outside %s/", n.target, top)
	}
	n.target = tn.path
	n.link = tn
	n.size = tn.size
	n.mode = tn.mode
	return nil
}

// resolve walks the target of the symlink l from l's directory the way the
// operating system would, and fails if the walk ever leaves files/ (the
// directory that becomes the release). With follow, it also follows the
// symlinks of the bundle the walk passes through; budget counts the work.
func (t *tree) resolve(l *node, follow bool, budget *int64) error {
	const floor = 1 // components of "files"
	cur := path.Dir(l.path)
	depth := strings.Count(cur, "/") + 1
	missing := 0 // trailing components of cur known not to exist
	hops := 0
	todo := pushPath(nil, l.target)
	for len(todo) > 0 {
		c := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		switch c {
		case "", ".":
			continue
		case "..":
			if depth <= floor {
				if hops > 0 {
					return entryErr(l.path, ErrUnsafePath, "symlink target %q escapes %s/ through another symlink", l.target, FilesDir)
				}
				return entryErr(l.path, ErrUnsafePath, "symlink target %q escapes %s/ (the release directory)", l.target, FilesDir)
			}
			cur = cur[:strings.LastIndexByte(cur, '/')]
			depth--
			if missing > 0 {
				missing--
			}
			continue
		}
		cur += "/" + c
		depth++
		if !follow {
			continue
		}
		if missing > 0 {
			missing++
			continue
		}
		if *budget -= int64(len(cur)); *budget < 0 {
			return entryErr(l.path, ErrTooLarge, "symlinks too many or too deep to check")
		}
		n, err := t.lookup(l.path, cur)
		if err != nil {
			return err
		}
		if n == nil {
			missing++
			continue
		}
		if n.kind == kindSymlink {
			if hops++; hops > maxLinkHops {
				return entryErr(l.path, ErrUnsafePath, "symlink target %q passes through more than %d symlinks (a loop?)", l.target, maxLinkHops)
			}
			cur = cur[:strings.LastIndexByte(cur, '/')]
			depth--
			todo = pushPath(todo, n.target)
		}
	}
	return nil
}

// pushPath pushes the components of p onto the stack so that the first
// component is popped first.
func pushPath(stack []string, p string) []string {
	parts := strings.Split(p, "/")
	for i := len(parts) - 1; i >= 0; i-- {
		stack = append(stack, parts[i])
	}
	return stack
}

// finish runs the checks that need the whole bundle and fills info.
func (t *tree) finish(info *Info) error {
	if n := t.nodes[FilesDir]; n == nil || n.kind != kindDir {
		return entryErr(FilesDir+"/", ErrBadLayout, "missing (a bundle must have a %s/ directory, even an empty one)", FilesDir)
	}
	budget := int64(resolveBudget)
	for _, l := range t.links {
		if err := t.resolve(l, true, &budget); err != nil {
			return err
		}
	}
	if err := t.checkMigrations(info); err != nil {
		return err
	}
	byPath := func(a, b *node) int { return strings.Compare(a.path, b.path) }
	if !slices.IsSortedFunc(t.order, byPath) {
		slices.SortFunc(t.order, byPath)
	}
	info.Files = make([]File, 0, len(t.order))
	for _, n := range t.order {
		f := File{Path: n.path, Size: n.size, Mode: n.mode, SHA256: n.sha256}
		switch n.kind {
		case kindSymlink:
			f.LinkTarget = n.target
		case kindHardlink:
			f.SHA256 = n.link.sha256
		}
		if n.kind == kindFile || n.kind == kindHardlink {
			if rest, ok := strings.CutPrefix(n.path, HooksDir+"/"); ok {
				info.Hooks = append(info.Hooks, rest)
			}
		}
		info.Files = append(info.Files, f)
	}
	slices.Sort(info.Hooks)
	return nil
}

// checkMigrations refuses a down migration without its up migration and two
// migrations with the same number, and lists the migrations in order.
func (t *tree) checkMigrations(info *Info) error {
	type mig struct{ num, name, dir, path string }
	var migs []mig
	for _, n := range t.order {
		rest, ok := strings.CutPrefix(n.path, MigrationsDir+"/")
		if !ok {
			continue
		}
		m := migrationRE.FindStringSubmatch(rest)
		if m == nil { // checkLayout lets nothing else through
			continue
		}
		num := strings.TrimLeft(m[1], "0")
		migs = append(migs, mig{num: num, name: m[1] + "_" + m[2], dir: m[3], path: n.path})
	}
	byNum := make(map[string]string)
	ups := make(map[string]bool)
	for _, m := range migs {
		if other, ok := byNum[m.num]; ok && other != m.name {
			return entryErr(m.path, ErrBadLayout, "migration number used twice (also by %s)", other)
		}
		byNum[m.num] = m.name
		if m.dir == "up" {
			ups[m.name] = true
		}
	}
	for _, m := range migs {
		if m.dir == "down" && !ups[m.name] {
			return entryErr(m.path, ErrBadLayout, "down migration without %s.up.sql", m.name)
		}
	}
	slices.SortFunc(migs, func(a, b mig) int {
		if len(a.num) != len(b.num) {
			return len(a.num) - len(b.num)
		}
		if c := strings.Compare(a.num, b.num); c != 0 {
			return c
		}
		// up before down for the same migration
		return -strings.Compare(a.dir, b.dir)
	})
	info.Migrations = make([]string, 0, len(migs))
	for _, m := range migs {
		info.Migrations = append(info.Migrations, strings.TrimPrefix(m.path, MigrationsDir+"/"))
	}
	return nil
}
