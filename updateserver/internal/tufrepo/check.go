package tufrepo

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/dropless/dropless/pkg/protocol"
)

// ErrBadTargets marks targets metadata the server refuses to publish.
var ErrBadTargets = errors.New("targets metadata refused")

// CheckTargetsUpdate verifies targets metadata signed off the server before
// the server publishes it: next must be signed by the threshold of targets
// keys that root names, be cur's successor version, not be expired, and
// differ from cur by exactly one new target, path -> want. Errors wrap
// ErrBadTargets and say what is wrong.
func CheckTargetsUpdate(root, cur, next []byte, path string, want *metadata.TargetFiles, now time.Time) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBadTargets, fmt.Sprintf(format, args...))
	}
	rootMD, err := parse[metadata.RootType](root)
	if err != nil {
		return err
	}
	curMD, err := parse[metadata.TargetsType](cur)
	if err != nil {
		return err
	}
	nextMD, err := parse[metadata.TargetsType](next)
	if err != nil {
		return bad("it is not valid targets metadata: %v", err)
	}
	if err := rootMD.VerifyDelegate(RoleTargets, nextMD); err != nil {
		return bad("it is not signed by the root's targets key(s): %v", err)
	}
	if nextMD.Signed.Version != curMD.Signed.Version+1 {
		return bad("its version is %d but the next version is %d (someone published meanwhile: run the command again)", nextMD.Signed.Version, curMD.Signed.Version+1)
	}
	if nextMD.Signed.IsExpired(now) {
		return bad("it expired at %s", nextMD.Signed.Expires.Format(time.RFC3339))
	}
	if !sameDelegations(curMD.Signed.Delegations, nextMD.Signed.Delegations) {
		return bad("it changes delegations, which publishing a release may not do")
	}
	if len(nextMD.Signed.Targets) != len(curMD.Signed.Targets)+1 {
		return bad("it lists %d targets but should list %d (the current ones plus %s)", len(nextMD.Signed.Targets), len(curMD.Signed.Targets)+1, path)
	}
	for p, tf := range curMD.Signed.Targets {
		got, ok := nextMD.Signed.Targets[p]
		if !ok {
			return bad("it drops target %s", p)
		}
		if !sameTarget(tf, got) {
			return bad("it changes target %s", p)
		}
	}
	got, ok := nextMD.Signed.Targets[path]
	if !ok {
		return bad("it does not list the new target %s", path)
	}
	if !sameTarget(want, got) {
		return bad("its entry for %s does not match the uploaded bundle (length %d, sha256 %s)", path, want.Length, hex.EncodeToString(want.Hashes["sha256"]))
	}
	return nil
}

func sameTarget(a, b *metadata.TargetFiles) bool {
	if a.Length != b.Length || len(a.Hashes) != len(b.Hashes) {
		return false
	}
	for alg, h := range a.Hashes {
		if !bytes.Equal(h, b.Hashes[alg]) {
			return false
		}
	}
	return sameCustom(a.Custom, b.Custom)
}

// sameCustom compares custom metadata by meaning, not spelling: JSON
// re-encoding may escape or space it differently.
func sameCustom(a, b *json.RawMessage) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	var ca, cb protocol.TargetCustom
	if json.Unmarshal(*a, &ca) != nil || json.Unmarshal(*b, &cb) != nil {
		return bytes.Equal(*a, *b)
	}
	return ca == cb
}

func sameDelegations(a, b *metadata.Delegations) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(ja, jb)
}

func decodeHex(s string) ([]byte, error) { return hex.DecodeString(s) }
