// Tests over the whole tree: the import boundaries of DESIGN.md and a
// package doc on every package.
package dropless_test

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/dropless/dropless/"

type goPackage struct {
	dir     string
	hasDoc  bool
	imports map[string][]string // import path -> files importing it
}

func packages(t *testing.T) map[string]*goPackage {
	t.Helper()
	pkgs := map[string]*goPackage{}
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") && path != "." || d.Name() == "testdata" || d.Name() == "bin") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly|parser.ParseComments)
		if err != nil {
			return err
		}
		dir := filepath.ToSlash(filepath.Dir(path))
		p := pkgs[dir]
		if p == nil {
			p = &goPackage{dir: dir, imports: map[string][]string{}}
			pkgs[dir] = p
		}
		if !strings.HasSuffix(path, "_test.go") && f.Doc != nil && strings.TrimSpace(f.Doc.Text()) != "" {
			p.hasDoc = true
		}
		for _, imp := range f.Imports {
			ip, _ := strconv.Unquote(imp.Path.Value)
			p.imports[ip] = append(p.imports[ip], path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return pkgs
}

// TestImportBoundaries: dependencies point one way. pkg/ imports nothing of
// ours but pkg/; the agent never imports the server, nor the server the
// agent.
func TestImportBoundaries(t *testing.T) {
	for dir, p := range packages(t) {
		for ip, files := range p.imports {
			if !strings.HasPrefix(ip, module) {
				continue
			}
			target := strings.TrimPrefix(ip, module)
			var bad string
			switch {
			case strings.HasPrefix(dir, "pkg/") && !strings.HasPrefix(target, "pkg/"):
				bad = "pkg/ may import only pkg/"
			case strings.HasPrefix(dir, "agent/") && strings.HasPrefix(target, "updateserver/"):
				bad = "the agent may not import the server"
			case strings.HasPrefix(dir, "updateserver/") && strings.HasPrefix(target, "agent/"):
				bad = "the server may not import the agent"
			}
			if bad != "" {
				t.Errorf("%s imports %s (%s): %s", dir, ip, strings.Join(files, ", "), bad)
			}
		}
	}
}

// testHelper reports whether the package in dir is a test helper, which
// only tests may import: its name ends in "test" (tlstest, tuftest,
// dbtest) or it is testutil.
func testHelper(dir string) bool {
	base := path.Base(dir)
	return strings.HasSuffix(base, "test") || base == "testutil"
}

// TestTestHelpersOnlyInTests: a test helper package is imported by
// _test.go files, the e2e harness (testenv) and other test helpers only,
// never by code that ships in a binary.
func TestTestHelpersOnlyInTests(t *testing.T) {
	helpers := 0
	for dir, p := range packages(t) {
		if testHelper(dir) {
			helpers++
			continue
		}
		if dir == "testenv" || strings.HasPrefix(dir, "testenv/") {
			continue
		}
		for ip, files := range p.imports {
			target := strings.TrimPrefix(ip, module)
			if target == ip || !testHelper(target) {
				continue
			}
			for _, f := range files {
				if !strings.HasSuffix(f, "_test.go") {
					t.Errorf("%s imports the test helper %s: only tests may", f, ip)
				}
			}
		}
	}
	if helpers < 4 {
		t.Errorf("found %d test helper packages, want at least 4 (tlstest, tuftest, dbtest, testutil): is testHelper still right?", helpers)
	}
}

// TestPackageDocs: every package says what it is for.
func TestPackageDocs(t *testing.T) {
	for dir, p := range packages(t) {
		if dir == "." {
			continue // this test-only package
		}
		nonTest := false
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), ".go") && !strings.HasSuffix(e.Name(), "_test.go") {
				nonTest = true
			}
		}
		if nonTest && !p.hasDoc {
			t.Errorf("package %s has no package doc comment", dir)
		}
	}
}

// TestMakeHelp: `make help` lists every target that has a `## ` comment.
func TestMakeHelp(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed")
	}
	mk, err := os.ReadFile("Makefile")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("make", "-s", "help").Output()
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			listed[f[0]] = true
		}
	}
	for _, line := range strings.Split(string(mk), "\n") {
		target, rest, ok := strings.Cut(line, ":")
		if !ok || !strings.Contains(rest, "## ") || strings.ContainsAny(target, " \t$") {
			continue
		}
		if !listed[target] {
			t.Errorf("make help does not list %q", target)
		}
	}
}
