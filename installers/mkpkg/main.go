// Command mkpkg builds the release packages into dist/ (run by `make
// packages`): the .deb and .rpm of updateagent and updateserver for each
// Linux architecture, from the nfpm configs in installers/agent and
// installers/server, and the agent's Windows zip. nfpm is used as a
// library, so nothing besides Go needs to be installed.
//
// It packages binaries already built (by the Makefile) as
// BUILD/linux_ARCH/updateagent, BUILD/linux_ARCH/updateserver and
// BUILD/windows_amd64/updateagent.exe, and runs from the repository's root.
package main

import (
	"archive/zip"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
	_ "github.com/goreleaser/nfpm/v2/rpm" // registers the rpm packager
)

// configs are the nfpm configs, one per package.
var configs = []string{"installers/agent/nfpm.yaml", "installers/server/nfpm.yaml"}

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "mkpkg: %v\n", err)
		var ue usageError
		if errors.As(err, &ue) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

type usageError struct{ error }

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("mkpkg", flag.ContinueOnError)
	fs.SetOutput(out)
	describe := fs.String("version", "", "the build's version, as `git describe --tags --always --dirty` prints it")
	build := fs.String("build", "dist/build", "directory of the built binaries (linux_ARCH/, windows_amd64/)")
	dist := fs.String("out", "dist", "directory the packages are written to")
	arches := fs.String("arch", "amd64 arm64", "Linux architectures to package, separated by spaces or commas")
	winZip := fs.Bool("windows", true, "also write the agent's Windows zip (needs BUILD/windows_amd64/updateagent.exe)")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q (see -help)", fs.Arg(0))}
	}
	version, err := PackageVersion(*describe)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*dist, 0o755); err != nil {
		return err
	}
	for _, arch := range strings.FieldsFunc(*arches, func(r rune) bool { return r == ' ' || r == ',' }) {
		env := map[string]string{"VERSION": version, "ARCH": arch, "BUILD": *build}
		for _, cfg := range configs {
			for _, format := range []string{"deb", "rpm"} {
				path, err := buildPackage(cfg, format, *dist, env)
				if err != nil {
					return err
				}
				fmt.Fprintln(out, path)
			}
		}
	}
	if *winZip {
		path, err := windowsZip(*build, *dist, version)
		if err != nil {
			return err
		}
		fmt.Fprintln(out, path)
	}
	return nil
}

// buildPackage writes one package of config cfg in format to dir and
// returns its path.
func buildPackage(cfg, format, dir string, env map[string]string) (string, error) {
	config, err := nfpm.ParseFileWithEnvMapping(cfg, func(k string) string { return env[k] })
	if err != nil {
		return "", fmt.Errorf("read %s: %w", cfg, err)
	}
	info, err := config.Get(format)
	if err != nil {
		return "", fmt.Errorf("%s for %s: %w", cfg, format, err)
	}
	info = nfpm.WithDefaults(info)
	if err := nfpm.Validate(info); err != nil {
		return "", fmt.Errorf("%s for %s: %w", cfg, format, err)
	}
	pkg, err := nfpm.Get(format)
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, pkg.ConventionalFileName(info))
	info.Target = path
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	if err := pkg.Package(info, f); err != nil {
		f.Close()
		os.Remove(path)
		return "", fmt.Errorf("package %s as %s (did `make packages` build the binaries?): %w", cfg, format, err)
	}
	return path, f.Close()
}

// windowsZip writes the agent's Windows zip: one folder with
// updateagent.exe, the example config and the install scripts.
func windowsZip(build, dir, version string) (string, error) {
	name := "updateagent_" + version + "_windows_amd64"
	files := []struct{ src, dst string }{
		{filepath.Join(build, "windows_amd64", "updateagent.exe"), "updateagent.exe"},
		{"installers/windows/agent.toml", "agent.toml"},
		{"installers/windows/install.ps1", "install.ps1"},
		{"installers/windows/uninstall.ps1", "uninstall.ps1"},
	}
	path := filepath.Join(dir, name+".zip")
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	zw := zip.NewWriter(f)
	for _, file := range files {
		if err := addToZip(zw, file.src, name+"/"+file.dst); err != nil {
			os.Remove(path)
			return "", err
		}
	}
	if err := zw.Close(); err != nil {
		return "", err
	}
	return path, f.Close()
}

func addToZip(zw *zip.Writer, src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("windows zip: %w", err)
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	hdr, err := zip.FileInfoHeader(st)
	if err != nil {
		return err
	}
	hdr.Name, hdr.Method = dst, zip.Deflate
	w, err := zw.CreateHeader(hdr)
	if err != nil {
		return err
	}
	_, err = io.Copy(w, in)
	return err
}
