package fleet

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// The arithmetic of rollouts, without the store: which sites go in which
// wave, and when failures pull the andon cord.

// DefaultWaves is one wave of every site.
var DefaultWaves = []float64{100}

// DefaultMaxParallel bounds a rollout's sites upgrading at once when
// create does not say.
const DefaultMaxParallel = 10

// DefaultMaxFailures pauses a rollout at its first failure.
const DefaultMaxFailures = "1"

// CheckWaves checks cumulative wave percentages: each above the one
// before, the last 100.
func CheckWaves(waves []float64) error {
	const how = "give cumulative percentages of the rollout's sites, increasing, ending at 100%, like 5%,25%,100%"
	if len(waves) == 0 {
		return fmt.Errorf("no waves: %s", how)
	}
	prev := 0.0
	for _, w := range waves {
		if math.IsNaN(w) || w <= prev || w > 100 {
			return fmt.Errorf("wave %s%% does not follow %s%%: %s", fmtPct(w), fmtPct(prev), how)
		}
		prev = w
	}
	if prev != 100 {
		return fmt.Errorf("the last wave is %s%%, so some sites would never upgrade: %s", fmtPct(prev), how)
	}
	return nil
}

// ParseWaves reads "5%,25%,100%" (the % signs are optional).
func ParseWaves(s string) ([]float64, error) {
	var out []float64
	for _, part := range strings.Split(s, ",") {
		p := strings.TrimSuffix(strings.TrimSpace(part), "%")
		v, err := strconv.ParseFloat(p, 64)
		if err != nil {
			return nil, fmt.Errorf("wave %q is not a percentage: write the waves like 5%%,25%%,100%%", strings.TrimSpace(part))
		}
		out = append(out, v)
	}
	return out, CheckWaves(out)
}

func fmtPct(p float64) string { return strconv.FormatFloat(p, 'f', -1, 64) }

// PlanWaves orders a rollout's sites into waves: the canary sites first,
// as wave 0 of their own, then the other sites in order, wave k ending
// where waves[k] percent of all the rollout's sites (canaries included,
// rounded up) have been taken. Waves left empty (the canaries or the
// rounding took their share) are dropped. sites must not hold the
// canaries.
func PlanWaves(sites, canary []string, waves []float64) [][]string {
	var out [][]string
	if len(canary) > 0 {
		out = append(out, canary)
	}
	total := len(sites) + len(canary)
	taken := 0 // of sites
	for _, p := range waves {
		upto := int(math.Ceil(p*float64(total)/100-1e-9)) - len(canary)
		upto = min(max(upto, taken), len(sites))
		if upto > taken {
			out = append(out, sites[taken:upto])
			taken = upto
		}
	}
	if taken < len(sites) { // waves not ending at 100: never, CheckWaves refuses it
		out = append(out, sites[taken:])
	}
	return out
}

// maxFailures is a parsed --max-failures: a count, or a percentage of
// the sites started.
type maxFailures struct {
	n   float64
	pct bool
}

// ParseMaxFailures reads "N" or "N%".
func ParseMaxFailures(s string) (maxFailures, error) {
	v, pct := strings.CutSuffix(strings.TrimSpace(s), "%")
	n, err := strconv.ParseFloat(v, 64)
	const how = "give a count (2) or a percentage of the sites started (10%)"
	switch {
	case err != nil || math.IsNaN(n) || math.IsInf(n, 0):
		return maxFailures{}, fmt.Errorf("max failures %q is not a number: %s", s, how)
	case !pct && (n < 1 || n != math.Trunc(n)):
		return maxFailures{}, fmt.Errorf("max failures %q: a count is a whole number of at least 1: %s", s, how)
	case pct && (n <= 0 || n > 100):
		return maxFailures{}, fmt.Errorf("max failures %q: a percentage is above 0 and at most 100: %s", s, how)
	}
	return maxFailures{n: n, pct: pct}, nil
}

// tripped reports whether failures of started sites reach the limit.
func (m maxFailures) tripped(failures, started int) bool {
	if failures == 0 {
		return false
	}
	if m.pct {
		return float64(failures)*100 >= m.n*float64(started)
	}
	return float64(failures) >= m.n
}
