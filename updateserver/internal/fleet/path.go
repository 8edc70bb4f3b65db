package fleet

import (
	"fmt"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/pkg/versions"
	"github.com/dropless/dropless/updateserver/internal/fault"
)

// PlanPath returns the releases to install, in order, to take a site from
// installed ("" on a fresh site) to target: target alone when its
// upgrade_from admits installed, otherwise the shortest chain of
// published, non-yanked releases in between, each admitting the one before
// (preferring newer releases among chains of the same length). A target
// older than installed is a downgrade, planned only with allowDowngrade.
func PlanPath(releases []protocol.Release, installed string, target protocol.Release, allowDowngrade bool) ([]protocol.Release, error) {
	if installed == "" {
		return []protocol.Release{target}, nil
	}
	if versions.Equal(installed, target.Version) {
		return nil, nil
	}
	if versions.Compare(target.Version, installed) < 0 {
		if !allowDowngrade {
			return nil, fault.New(fault.Conflict, "%s %s is older than the installed %s: a downgrade runs down migrations; confirm it with --allow-downgrade", target.Product, target.Version, installed)
		}
		return []protocol.Release{target}, nil
	}
	admits := func(r protocol.Release, from string) bool {
		ok, err := versions.Admits(r.UpgradeFrom, from)
		return err == nil && ok
	}
	if admits(target, installed) {
		return []protocol.Release{target}, nil
	}
	// Candidates: strictly between installed and target, not yanked,
	// newest first so that BFS meets newer hops first.
	var cands []protocol.Release
	for _, r := range releases {
		if r.Yanked || r.Product != target.Product {
			continue
		}
		if versions.Compare(r.Version, installed) > 0 && versions.Compare(r.Version, target.Version) < 0 {
			cands = append(cands, r)
		}
	}
	sortNewestFirst(cands)
	// BFS over versions; prev records how each was reached.
	prev := map[string]string{}
	seen := map[string]bool{installed: true}
	frontier := []string{installed}
	for len(frontier) > 0 {
		var next []string
		for _, from := range frontier {
			if admits(target, from) {
				return chain(prev, cands, from, target), nil
			}
			for _, c := range cands {
				if !seen[c.Version] && versions.Compare(c.Version, from) > 0 && admits(c, from) {
					seen[c.Version] = true
					prev[c.Version] = from
					next = append(next, c.Version)
				}
			}
		}
		frontier = next
	}
	return nil, fault.New(fault.Conflict, "no upgrade path from %s to %s %s through published, non-yanked releases: %s upgrades only from %q and no release reachable from %s is in that range; publish a release that upgrades from %s into it",
		installed, target.Product, target.Version, target.Version, target.UpgradeFrom, installed, installed)
}

// chain rebuilds the path that ends at last, then target.
func chain(prev map[string]string, cands []protocol.Release, last string, target protocol.Release) []protocol.Release {
	byVersion := map[string]protocol.Release{}
	for _, c := range cands {
		byVersion[c.Version] = c
	}
	path := []protocol.Release{target}
	for v := last; ; v = prev[v] {
		r, ok := byVersion[v]
		if !ok {
			break // reached installed
		}
		path = append([]protocol.Release{r}, path...)
	}
	return path
}

func sortNewestFirst(rs []protocol.Release) {
	for i := 1; i < len(rs); i++ {
		for j := i; j > 0 && versions.Compare(rs[j].Version, rs[j-1].Version) > 0; j-- {
			rs[j], rs[j-1] = rs[j-1], rs[j]
		}
	}
}

func describePath(path []protocol.Release) string {
	s := ""
	for i, r := range path {
		if i > 0 {
			s += " -> "
		}
		s += r.Version
	}
	return fmt.Sprintf("[%s]", s)
}
