package main

import (
	"fmt"
	"regexp"
	"strings"
)

var (
	// v1.2.3, v1.2.3-rc.1, v1.2.3-5-gabc1234, v1.2.3-rc.1-5-gabc1234-dirty
	describeRe = regexp.MustCompile(`^v?(\d+\.\d+\.\d+)(?:-([0-9A-Za-z.]+?))??(?:-(\d+)-g([0-9a-f]+))?(-dirty)?$`)
	// abc1234, abc1234-dirty: no tag yet
	hashRe = regexp.MustCompile(`^([0-9a-f]{4,40})(-dirty)?$`)
)

// PackageVersion maps what `git describe --tags --always --dirty` prints
// (the Makefile's VERSION) to a version dpkg and rpm both accept and
// order as releases are ordered:
//
//	v1.2.3                       1.2.3
//	v1.2.3-rc.1                  1.2.3~rc.1        (before 1.2.3)
//	v1.2.3-5-gabc1234            1.2.3+git5.abc1234 (after 1.2.3)
//	v1.2.3-5-gabc1234-dirty      1.2.3+git5.abc1234.dirty
//	abc1234 (no tag yet)         0.0.0~git.abc1234
//	0.0.0-dev (no git)           0.0.0~dev
func PackageVersion(describe string) (string, error) {
	d := strings.TrimSpace(describe)
	if m := hashRe.FindStringSubmatch(d); m != nil && !describeRe.MatchString(d) {
		return "0.0.0~git." + m[1] + dirty(m[2]), nil
	}
	m := describeRe.FindStringSubmatch(d)
	if m == nil {
		return "", fmt.Errorf("version %q: not what git describe prints for a tag vMAJOR.MINOR.PATCH (or a bare commit): tag the release, or pass VERSION=1.2.3", describe)
	}
	v := m[1]
	if m[2] != "" {
		v += "~" + m[2]
	}
	switch {
	case m[3] != "":
		v += "+git" + m[3] + "." + m[4] + dirty(m[5])
	case m[5] != "":
		v += "+dirty"
	}
	return v, nil
}

func dirty(s string) string {
	if s != "" {
		return ".dirty"
	}
	return ""
}
