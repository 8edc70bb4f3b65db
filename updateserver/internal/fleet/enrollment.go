package fleet

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/fault"
	"github.com/dropless/dropless/updateserver/internal/store"
)

// EnrollTokenPrefix starts every enroll token (an agent's own credential
// starts with protocol.AgentCredentialPrefix).
const EnrollTokenPrefix = "dle_"

// CreateEnrollToken makes a token with which agents of client enroll. With
// Site it enrolls that site name only; with Replace too it may enroll that
// site again when it is already enrolled for the client (a new machine, a
// lost credential). Site names are global: one name, one site.
func (f *Fleet) CreateEnrollToken(ctx context.Context, req protocol.CreateEnrollTokenRequest, actor string) (protocol.CreateEnrollTokenResponse, error) {
	if err := validName("client", req.Client); err != nil {
		return protocol.CreateEnrollTokenResponse{}, err
	}
	if req.Site != "" {
		if err := validName("site", req.Site); err != nil {
			return protocol.CreateEnrollTokenResponse{}, err
		}
	} else if req.Replace {
		return protocol.CreateEnrollTokenResponse{}, fault.New(fault.Invalid, "replace needs a site: a token that may enroll an existing site again is made for that one site (--site SITE --replace)")
	}
	ttl := 24 * time.Hour
	if req.ExpiresIn != "" {
		d, err := time.ParseDuration(req.ExpiresIn)
		if err != nil || d <= 0 {
			return protocol.CreateEnrollTokenResponse{}, fault.New(fault.Invalid, "expires %q is not a positive duration (write it like 24h or 30m)", req.ExpiresIn)
		}
		ttl = d
	}
	uses := req.Uses
	if uses == 0 {
		uses = 1
	}
	if uses < 0 || uses > 100000 {
		return protocol.CreateEnrollTokenResponse{}, fault.New(fault.Invalid, "uses %d: give a number from 1 to 100000", uses)
	}
	now := f.now()
	secret := store.NewSecret(EnrollTokenPrefix)
	exp := now.Add(ttl).UTC()
	id, err := f.Store.CreateEnrollToken(ctx, now, store.NewEnrollToken{Secret: secret, Client: req.Client, Site: req.Site, Replace: req.Replace,
		ExpiresAt: exp, Uses: uses, By: actor})
	if err != nil {
		return protocol.CreateEnrollTokenResponse{}, err
	}
	return protocol.CreateEnrollTokenResponse{ID: id, Token: secret, Client: req.Client, Site: req.Site, Replace: req.Replace, ExpiresAt: exp, Uses: uses}, nil
}

// Enroll exchanges an enroll token for the site's own credential. A
// refusal of an enrolled site reads the same whoever owns it: it names
// neither the site's client nor its product.
func (f *Fleet) Enroll(ctx context.Context, req protocol.EnrollRequest) (protocol.EnrollResponse, error) {
	for kind, v := range map[string]string{"site": req.Site, "client": req.Client, "product": req.Product} {
		if err := validName(kind, v); err != nil {
			return protocol.EnrollResponse{}, err
		}
	}
	cred := store.NewSecret(protocol.AgentCredentialPrefix)
	replaced, err := f.Store.Enroll(ctx, f.now(), req.Token, req, cred)
	var ref *store.EnrollRefusal
	errors.As(err, &ref)
	unauthorized := func(msg string) error { return &fault.Error{Kind: fault.Unauthorized, Msg: msg, Err: err} }
	switch {
	case errors.Is(err, store.ErrEnrollTokenInvalid), errors.Is(err, store.ErrEnrollTokenExpired),
		errors.Is(err, store.ErrEnrollTokenUsed), errors.Is(err, store.ErrEnrollTokenRevoked):
		return protocol.EnrollResponse{}, unauthorized(err.Error() + ": ask support for a new one (updateserver enroll-token create)")
	case errors.Is(err, store.ErrWrongClient):
		return protocol.EnrollResponse{}, unauthorized(fmt.Sprintf("the enroll token is for another client (%s, not %s): set client in the agent config, or ask support for a token for %s",
			ref.TokenClient, req.Client, req.Client))
	case errors.Is(err, store.ErrWrongSite):
		return protocol.EnrollResponse{}, unauthorized(fmt.Sprintf("the enroll token is for site %s only, not %s: set site = %q in the agent config, or ask support for a token for %s",
			ref.TokenSite, req.Site, ref.TokenSite, req.Site))
	case errors.Is(err, store.ErrSiteEnrolled):
		// Word for word the same for every caller: nothing in it depends
		// on the token, the request's client or the site's owner.
		return protocol.EnrollResponse{}, &fault.Error{Kind: fault.Conflict, Err: err, Msg: fmt.Sprintf(
			"site %s is already enrolled: to enroll it again (a new machine or a lost credential), ask support for a token made with enroll-token create --client <your client> --site %s --replace",
			req.Site, req.Site)}
	case errors.Is(err, store.ErrWrongProduct):
		return protocol.EnrollResponse{}, &fault.Error{Kind: fault.Conflict, Err: err, Msg: fmt.Sprintf(
			"site %s runs product %s, not %s: set product = %q in the agent config, or enroll this machine under another site name",
			req.Site, ref.SiteProduct, req.Product, ref.SiteProduct)}
	case err != nil:
		return protocol.EnrollResponse{}, err
	}
	if replaced {
		f.Log.Info("site enrolled again; its old credential no longer works", "site", req.Site, "client", req.Client, "product", req.Product, "hostname", req.Hostname)
	} else {
		f.Log.Info("site enrolled", "site", req.Site, "client", req.Client, "product", req.Product, "hostname", req.Hostname)
	}
	return protocol.EnrollResponse{Site: req.Site, Credential: cred}, nil
}
