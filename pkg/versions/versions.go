// Package versions wraps hashicorp/go-version with the few operations the
// server and the agent share: parsing with a helpful error, equality across
// spellings ("1.2" is "1.2.0"), ordering, and upgrade_from constraints.
package versions

import (
	"fmt"
	"sort"
	"strings"

	goversion "github.com/hashicorp/go-version"
)

// Parse parses a release version such as 1.2.3 or 2.0.0-rc.1.
func Parse(v string) (*goversion.Version, error) {
	pv, err := goversion.NewVersion(v)
	if err != nil {
		return nil, fmt.Errorf("version %q is not a valid version (use semantic versioning such as 1.2.3)", v)
	}
	return pv, nil
}

// ParseConstraint parses an upgrade_from constraint such as ">= 2.0, < 3.0".
// The empty constraint is valid and admits every version.
func ParseConstraint(c string) (goversion.Constraints, error) {
	if c == "" {
		return nil, nil
	}
	pc, err := goversion.NewConstraint(c)
	if err != nil {
		return nil, fmt.Errorf("constraint %q is not valid (write it like \">= 2.0, < 3.0\" or \"~> 3.2\")", c)
	}
	return pc, nil
}

// Equal reports whether a and b name the same version. Unparsable versions
// are equal only when the strings are.
func Equal(a, b string) bool {
	va, err1 := goversion.NewVersion(a)
	vb, err2 := goversion.NewVersion(b)
	if err1 != nil || err2 != nil {
		return a == b
	}
	return va.Equal(vb)
}

// Compare orders two versions like strings.Compare. Unparsable versions sort
// before parsable ones, and among themselves as strings.
func Compare(a, b string) int {
	va, err1 := goversion.NewVersion(a)
	vb, err2 := goversion.NewVersion(b)
	switch {
	case err1 != nil && err2 != nil:
		switch {
		case a < b:
			return -1
		case a > b:
			return 1
		}
		return 0
	case err1 != nil:
		return -1
	case err2 != nil:
		return 1
	}
	return va.Compare(vb)
}

// SortDescending sorts versions newest first.
func SortDescending(vs []string) {
	sort.SliceStable(vs, func(i, j int) bool { return Compare(vs[i], vs[j]) > 0 })
}

// Admits reports whether constraint c (upgrade_from) admits version v. The
// empty constraint admits everything.
func Admits(c, v string) (bool, error) {
	pc, err := ParseConstraint(c)
	if err != nil {
		return false, err
	}
	pv, err := Parse(v)
	if err != nil {
		return false, err
	}
	if pc == nil {
		return true, nil
	}
	return pc.Check(pv), nil
}

// ParsePin parses the pin of a site that follows a channel: a constraint
// (hashicorp/go-version syntax) that the channel's releases must satisfy
// for the site to take them. The pin's "~>" names a release line by the
// parts written: "~> 3.2" is the 3.2 line (>= 3.2.0, < 3.3.0: hot fixes
// on 3.2 only) and "~> 3" the 3 line (>= 3.0.0, < 4.0.0), where go-version
// alone reads "~> 3.2" as >= 3.2, < 4.0 and "~> 3" as >= 3. A three-part
// "~> 3.2.1" means what go-version says (>= 3.2.1, < 3.3.0). It returns
// the constraint as it checks it, and "" admits every version.
func ParsePin(pin string) (string, goversion.Constraints, error) {
	if strings.TrimSpace(pin) == "" {
		return "", nil, nil
	}
	parts := strings.Split(pin, ",")
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if rest, ok := strings.CutPrefix(p, "~>"); ok {
			v := strings.TrimSpace(rest)
			// One part more than written: go-version then keeps every
			// written part fixed.
			if n := strings.Count(v, ".") + 1; !strings.ContainsAny(v, "-+") && n < 3 {
				v += ".0"
			}
			p = "~> " + v
		}
		parts[i] = p
	}
	norm := strings.Join(parts, ", ")
	c, err := goversion.NewConstraint(norm)
	if err != nil {
		return "", nil, fmt.Errorf("pin %q is not a valid constraint (write it like \"~> 3.2\" for hot fixes on 3.2, or \">= 3.0, < 4.0\")", pin)
	}
	return norm, c, nil
}
