package engine

// The trust boundary of the agent: the one place that decides whether an
// assignment may run. Read it alone.
//
// An assignment (protocol.Assignment) comes from the update server, or
// from anyone between the server and the agent. It is a request, not an
// authority: a stolen server, or a proxy on a plain-HTTP path, can put
// anything in it. What the agent acts on is only
//
//   - what the release team signed: the TUF target's custom metadata
//     (product, version, upgrade_from), which the Fetcher returns only
//     once go-tuf verified it against the pinned root; and
//   - the agent's own config: product and allow_downgrade.
//
// Before anything is downloaded, checkRequest and checkSigned refuse
//
//   - an assignment of another product than the configured one;
//   - a signed target of another product than the configured one;
//   - a signed target whose version is not the assigned version;
//   - a version older than the installed one unless the config has
//     allow_downgrade = true AND the assignment asks for the downgrade
//     (support's --allow-downgrade): neither alone is enough;
//   - a newer version whose signed upgrade_from does not admit the
//     installed version (an allowed downgrade is not held to
//     upgrade_from, which says what a release upgrades from).
//
// Every refusal is an *untrustedError, matched with errors.Is(err,
// ErrUntrusted): the job ends failed before the app is touched, with a
// reason that names the signed fact, both values and what to do.
//
// What the assignment still decides, the agent's config permitting: which
// signed target to install (Target, Version) and when; the job's ID; and
// the per-job consents AcceptDrift and AllowIrreversible, which only
// loosen checks of the bundle the release team signed (see SECURITY.md,
// "What an assignment may and may not decide"). Its From is only logged.

import (
	"errors"
	"fmt"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/pkg/versions"
)

// ErrUntrusted is matched (errors.Is) by every refusal of an assignment
// that asks for something the release team did not sign for this site,
// or that the agent's config does not allow.
var ErrUntrusted = errors.New("the assignment is not what the release team signed for this agent")

// untrustedError is a refusal at the trust boundary. Its text is the job's
// reason.
type untrustedError struct{ reason string }

func (e *untrustedError) Error() string        { return "refused: " + e.reason }
func (e *untrustedError) Is(target error) bool { return target == ErrUntrusted }

func untrusted(format string, args ...any) error {
	return &untrustedError{reason: fmt.Sprintf(format, args...)}
}

// policy is what the agent's own config says about what it may install.
type policy struct {
	// product is the configured product: the only one this agent installs.
	product string
	// allowDowngrade is the config's allow_downgrade.
	allowDowngrade bool
}

func (e *Engine) policy() policy {
	return policy{product: e.cfg.Product, allowDowngrade: e.cfg.AllowDowngrade}
}

// downgradeAllowed is the effective permission to go back to an older
// version: the agent's config allows downgrades and the assignment asks
// for this one. The migration planner gets this, never the assignment's
// flag alone.
func (p policy) downgradeAllowed(a protocol.Assignment) bool {
	return p.allowDowngrade && a.AllowDowngrade
}

// checkRequest checks what the assignment says about itself against the
// config, before anything is fetched: its product.
func (p policy) checkRequest(a protocol.Assignment) error {
	if a.Product != p.product {
		return untrusted("the assignment is for product %q, this agent manages %s: the server assigned another product's release; check the server (it may be compromised)",
			a.Product, p.product)
	}
	return nil
}

// checkSigned checks the signed custom metadata of the assigned target
// (verified by TUF) against the config, the assignment and the installed
// version ("" on a fresh site).
func (p policy) checkSigned(a protocol.Assignment, installed string, signed protocol.TargetCustom) error {
	if signed.Product != p.product {
		return untrusted("the signed target %s is of product %q, this agent manages %s: the server assigned another product's release; check the server (it may be compromised)",
			a.Target, signed.Product, p.product)
	}
	if !versions.Equal(signed.Version, a.Version) {
		return untrusted("the signed target %s is version %q, the assignment says %s: the server's assignment does not match what the release team signed; check the server (it may be compromised)",
			a.Target, signed.Version, a.Version)
	}
	return p.checkVersions(installed, signed, a)
}

// checkVersions checks moving from installed to the signed version: a
// downgrade needs the config's and the assignment's permission; an
// upgrade needs the signed upgrade_from to admit installed.
func (p policy) checkVersions(installed string, signed protocol.TargetCustom, a protocol.Assignment) error {
	if installed == "" {
		return nil // a first install: nothing to upgrade from
	}
	if versions.Compare(signed.Version, installed) < 0 {
		switch {
		case !p.allowDowngrade:
			asked := "the assignment asks for it"
			if !a.AllowDowngrade {
				asked = "the assignment does not ask for it either"
			}
			return untrusted("%s %s is older than the installed %s and this agent's config does not allow downgrades (%s): set allow_downgrade = true in the agent's config if this site may go back, then have support assign it with --allow-downgrade",
				signed.Product, signed.Version, installed, asked)
		case !a.AllowDowngrade:
			return untrusted("%s %s is older than the installed %s and the assignment does not ask for a downgrade: a downgrade runs down migrations; support confirms one with updateserver upgrade --allow-downgrade",
				signed.Product, signed.Version, installed)
		}
		return nil
	}
	ok, err := versions.Admits(signed.UpgradeFrom, installed)
	if err != nil {
		return untrusted("the signed upgrade_from %q of %s %s cannot be read (%v): ask the release team to publish it again",
			signed.UpgradeFrom, signed.Product, signed.Version, err)
	}
	if !ok {
		return untrusted("%s %s cannot upgrade from the installed %s: its signed upgrade_from is %q; upgrade to a release it admits first (updateserver upgrade plans the path)",
			signed.Product, signed.Version, installed, signed.UpgradeFrom)
	}
	return nil
}
