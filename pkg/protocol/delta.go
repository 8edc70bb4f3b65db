package protocol

import (
	"encoding/json"
	"errors"
	"fmt"
)

// DeltaTargetPath is the TUF target path of the delta that rebuilds
// product's bundle at version from its bundle at base.
func DeltaTargetPath(product, version, base string) string {
	return TargetPath(product, version) + ".delta-from-" + base
}

// DeltaCustom is the custom metadata of a delta target: which release it
// rebuilds (Product, Version, whose full target is Result) from which
// (From). The rebuilt bundle must match the full target's signed hashes
// and length; a delta carries no authority of its own.
type DeltaCustom struct {
	Product string `json:"product"`
	Version string `json:"version"`
	From    string `json:"delta_from"`
	Result  string `json:"delta_result"`
}

// ParseDeltaCustom decodes a delta target's custom metadata defensively.
func ParseDeltaCustom(raw []byte) (DeltaCustom, error) {
	var c DeltaCustom
	if len(raw) == 0 || len(raw) > maxCustomSize {
		return c, fmt.Errorf("delta target custom metadata is %d bytes: not a delta this server made", len(raw))
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return c, fmt.Errorf("delta target custom metadata is not valid: %w", err)
	}
	if c.Product == "" || c.Version == "" || c.From == "" || c.Result == "" {
		return c, errors.New("delta target custom metadata lacks product, version, delta_from or delta_result")
	}
	return c, nil
}

// Delta is one delta published next to a release's full bundle.
type Delta struct {
	From   string `json:"from"`
	Target string `json:"target"`
	SHA256 string `json:"sha256"`
	Length int64  `json:"length"`
}
