package vendors

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"
)

// oauthStrategy is an RFC 6749 token endpoint described by data: the
// generic "oauth2" vendor, and every vendor whose quirks are defaults and
// shapes (smartdocumentor, abbyy_vantage, brightpattern, saasu). Settings
// (docs/design.md, Vendors): token_url, grant_type (client_credentials, password),
// client_auth (client_secret_basic, client_secret_post, client_secret_jwt,
// private_key_jwt, tls_client_auth), scope, audience, resource,
// body_format, extra_params.<name>, refresh_url, default_ttl, and the
// common ones.
type oauthStrategy struct {
	info     Info
	defaults Settings
	// scopeParam lets a request set the scope param when no scope setting
	// is configured.
	scopeParam bool
	// oneOf restricts params to fixed sets of values (ABBYY's region).
	oneOf map[string][]string
	// urlByParam: when a request gives the param, the token URL template
	// is this setting instead of token_url (ABBYY's tenant_id selects
	// tenant_token_url).
	urlByParam map[string]string
	// requiredSettings must be configured (Bright Pattern's host).
	requiredSettings []string
	// defaultsFrom gives a setting another setting's value when unset
	// (Bright Pattern's scope is its host).
	defaultsFrom map[string]string
	// bodyFormats are the body_format values the vendor accepts, the
	// default first; nil means form, json.
	bodyFormats []string
	// xmlRoots name the root element of an XML body per grant_type
	// (Saasu's OAuthPasswordCredentialsGrantRequest).
	xmlRoots map[string]string
	// order is the body field order of the vendor's documented example;
	// nil keeps grant_type, grant fields, scope, extras, client fields.
	order []string
	// refreshWithoutScope leaves scope out of the refresh grant, where the
	// vendor keeps the original scope and refuses extra members (Saasu);
	// RFC 6749 section 6 makes it optional.
	refreshWithoutScope bool
}

var _ Strategy = (*oauthStrategy)(nil)

func (s *oauthStrategy) Info() Info { return s.info }

// scopeSyntax is RFC 6749 section 3.3's scope-token alphabet, with spaces.
var scopeSyntax = regexp.MustCompile(`^[\x21\x23-\x5B\x5D-\x7E ]+$`)

func (s *oauthStrategy) ResolveCall(in Input) (Call, error) {
	if err := checkSettingNames(s.info, in.Settings); err != nil {
		return nil, err
	}
	set, err := s.settings(in.Settings)
	if err != nil {
		return nil, err
	}
	if err := s.checkInputs(in); err != nil {
		return nil, err
	}
	usedParams, usedCreds := map[string]bool{}, map[string]bool{}
	target, refreshURL, err := s.targets(set, in.Params, usedParams)
	if err != nil {
		return nil, err
	}
	grant := set.String("grant_type", "client_credentials")
	body, workload, err := grantBody(grant, set, in, usedCreds, target)
	if err != nil {
		return nil, err
	}
	if err := s.addScope(&body, set, in.Params, usedParams); err != nil {
		return nil, err
	}
	if err := addConfiguredFields(&body, set); err != nil {
		return nil, err
	}
	format, err := s.bodyFormat(set)
	if err != nil {
		return nil, err
	}
	if err := checkParamsUsed(s.info, in.Params, usedParams); err != nil {
		return nil, err
	}
	expireWithAssertion, err := set.Bool("expire_with_assertion")
	if err != nil {
		return nil, err
	}
	auth, err := oauthClientAuth(grant, set, in, usedCreds)
	if err != nil {
		return nil, err
	}
	if err := checkCredentialsUsed(in.Credentials, usedCreds, set); err != nil {
		return nil, err
	}
	x, err := baseExchange(s.info.ID, target, set, in)
	if err != nil {
		return nil, err
	}
	return &oauthCall{
		exchange:            x,
		fields:              body,
		auth:                auth,
		format:              format,
		order:               s.order,
		xmlRoots:            s.xmlRoots,
		refreshURL:          refreshURL,
		refreshScope:        !s.refreshWithoutScope,
		refreshes:           slices.Contains(s.info.GrantTypes, "refresh_token"),
		workload:            workload,
		expireWithAssertion: expireWithAssertion,
	}, nil
}

// settings are the vendor's defaults overlaid with the given ones, every
// required setting present and the derived defaults filled in.
func (s *oauthStrategy) settings(given Settings) (Settings, error) {
	set := s.defaults.Overlay(given)
	for _, name := range s.requiredSettings {
		if set[name] == "" {
			return nil, &ConfigError{Setting: name, Reason: "is required for vendor " + s.info.ID}
		}
	}
	for name, from := range s.defaultsFrom {
		if set[name] == "" {
			set[name] = set[from]
		}
	}
	return set, nil
}

// checkInputs checks the request's credentials and the params with a
// fixed set of values before anything is built from them.
func (s *oauthStrategy) checkInputs(in Input) error {
	if err := checkCredentialNames(s.info, in.Credentials); err != nil {
		return err
	}
	return checkOneOf(s.oneOf, in.Params)
}

// targets resolves the token URL (or the one a given param selects,
// urlByParam) and the refresh grant's URL: refresh_url when the vendor
// has one and it is set, else the token URL.
func (s *oauthStrategy) targets(set Settings, params map[string]string, usedParams map[string]bool) (target, refreshURL string, err error) {
	urlSetting := "token_url"
	for param, setting := range s.urlByParam {
		if params[param] != "" {
			urlSetting = setting
		}
	}
	target, err = resolveTarget(s.info, urlSetting, set, params, usedParams)
	if err != nil {
		return "", "", err
	}
	if !slices.Contains(s.info.Settings, "refresh_url") || set["refresh_url"] == "" {
		return target, target, nil
	}
	refreshURL, err = resolveTarget(s.info, "refresh_url", set, params, usedParams)
	if err != nil {
		return "", "", err
	}
	return target, refreshURL, nil
}

// grantBody starts the body with the grant and its own members: the
// password grant's username and password, or the workload grant
// (workload.go) that sends the broker's own identity.
func grantBody(grant string, set Settings, in Input, usedCreds map[string]bool, target string) (fields, *workloadGrant, error) {
	body := fields{{"grant_type", grant}}
	switch grant {
	case grantJWTBearer, grantTokenExchange:
		workload, err := newWorkloadGrant(grant, set, in, usedCreds, target)
		if err != nil {
			return nil, nil, err
		}
		return body, workload, nil
	case "client_credentials":
	case "password":
		for _, name := range []string{"username", "password"} {
			if in.Credentials.Get(name) == "" {
				return nil, nil, &ArgumentError{Field: "credentials." + name, Reason: "is required for the password grant"}
			}
			body.set(name, in.Credentials.Get(name))
			usedCreds[name] = true
		}
	default:
		return nil, nil, &ConfigError{Setting: "grant_type", Reason: fmt.Sprintf("%q is not supported (client_credentials, password, %s, %s)", grant, grantJWTBearer, grantTokenExchange)}
	}
	return body, nil, nil
}

// addScope adds the scope setting, or the scope param where the vendor
// lets a request choose it and no setting fixes it.
func (s *oauthStrategy) addScope(body *fields, set Settings, params map[string]string, usedParams map[string]bool) error {
	scope := set["scope"]
	if v, ok := params["scope"]; ok && s.scopeParam {
		if scope != "" {
			return &ArgumentError{Field: "params.scope", Reason: "the scope is fixed by the server configuration"}
		}
		if len(v) > 1024 || !scopeSyntax.MatchString(v) {
			return &ArgumentError{Field: "params.scope", Reason: "is not an RFC 6749 scope (printable ASCII without \" and \\, space-separated)"}
		}
		scope, usedParams["scope"] = v, true
	}
	if scope != "" {
		body.set("scope", scope)
	}
	return nil
}

// addConfiguredFields adds the audience and resource settings and the
// extra_params, in sorted order; an extra param may not replace a member
// the broker sets (reservedParams).
func addConfiguredFields(body *fields, set Settings) error {
	for _, name := range []string{"audience", "resource"} {
		if v := set[name]; v != "" {
			body.set(name, v)
		}
	}
	extra := set.Map("extra_params")
	for _, k := range sortedKeys(extra) {
		if reservedParams[k] {
			return &ConfigError{Setting: "extra_params." + k, Reason: "is set by the broker; use the dedicated setting or credential"}
		}
		body.set(k, extra[k])
	}
	return nil
}

// bodyFormat is the body_format setting, one of the vendor's formats (the
// first by default).
func (s *oauthStrategy) bodyFormat(set Settings) (string, error) {
	formats := s.bodyFormats
	if formats == nil {
		formats = []string{bodyForm, bodyJSON}
	}
	format := set.String("body_format", formats[0])
	if !slices.Contains(formats, format) {
		return "", &ConfigError{Setting: "body_format", Reason: fmt.Sprintf("%q is not one of %s", format, strings.Join(formats, ", "))}
	}
	return format, nil
}

// oauthClientAuth is the client authentication the settings choose. Without
// client_auth it is private_key_jwt when a client_assertion_file is set,
// none for a workload grant (RFC 7523 section 2.1 and RFC 8693 section 2.1:
// the grant's token is the credential, client authentication is
// optional), else client_secret_basic.
func oauthClientAuth(grant string, set Settings, in Input, usedCreds map[string]bool) (*clientAuth, error) {
	defaultAuth := authBasic
	switch {
	case set["client_assertion_file"] != "":
		defaultAuth = authKeyJWT
	case isWorkloadGrant(grant):
		defaultAuth = authNone
	}
	auth, err := newClientAuth(set, in, defaultAuth, usedCreds)
	if err != nil {
		return nil, err
	}
	if set["client_assertion_file"] != "" && auth.assertionFile == "" {
		return nil, &ConfigError{Setting: "client_assertion_file", Reason: "needs client_auth private_key_jwt (or client_auth unset)"}
	}
	return auth, nil
}

// reservedParams are body members the broker sets itself: extra_params may
// not override them (a typo must not replace the client's authentication).
var reservedParams = map[string]bool{
	"grant_type": true, "username": true, "password": true, "refresh_token": true, "scope": true,
	"client_id": true, "client_secret": true, "client_assertion": true, "client_assertion_type": true,
	"assertion": true, "subject_token": true, "subject_token_type": true, "requested_token_type": true, "actor_token": true,
}

// baseExchange fills what every exchange shares from the settings.
func baseExchange(vendor, target string, set Settings, in Input) (exchange, error) {
	defaultTTL, err := set.Duration("default_ttl", 0)
	if err != nil {
		return exchange{}, err
	}
	if defaultTTL > MaxLifetime {
		return exchange{}, &ConfigError{Setting: "default_ttl", Reason: "must be at most one year"}
	}
	timeout, err := set.Duration("timeout", DefaultTimeout)
	if err != nil {
		return exchange{}, err
	}
	client, err := httpClientFor(set, in.HTTPClient)
	if err != nil {
		return exchange{}, err
	}
	var secrets []string
	for _, v := range in.Credentials {
		secrets = append(secrets, encodings(v.Reveal())...)
	}
	return exchange{
		vendor:     vendor,
		url:        target,
		defaultTTL: defaultTTL,
		timeout:    timeout,
		client:     client,
		secrets:    secrets,
	}, nil
}

// oauthCall is a prepared RFC 6749 token request.
type oauthCall struct {
	exchange
	// fields are the primary grant's body, without client authentication.
	fields       fields
	auth         *clientAuth
	format       string
	order        []string
	xmlRoots     map[string]string
	refreshURL   string
	refreshScope bool
	// refreshes: the vendor documents the refresh grant; others are never
	// sent one.
	refreshes bool
	// workload is the JWT bearer or token exchange grant (workload.go),
	// nil for the others; expireWithAssertion caps a token at the exp of
	// the assertion it came from.
	workload            *workloadGrant
	expireWithAssertion bool
}

func (c *oauthCall) Target() string { return c.url }

// RequestedScope is the scope the request asks for (the service answers it
// when the vendor returns none).
func (c *oauthCall) RequestedScope() string { return c.fields.get("scope") }

// Fetch uses the refresh token first when there is one (RFC 6749 section
// 6). When the vendor refuses it (invalid_grant, or any other definitive
// 4xx: a refresh that can never succeed must not wedge the cache key), the
// primary grant follows; a vendor outage is returned as it is.
//
// Both grants share one timeout window, so a fallback never doubles it.
func (c *oauthCall) Fetch(ctx context.Context, refreshToken string) (*Token, error) {
	timeout := c.timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if refreshToken != "" && c.refreshes {
		refresh := fields{{"grant_type", "refresh_token"}, {"refresh_token", refreshToken}}
		if scope := c.fields.get("scope"); scope != "" && c.refreshScope {
			refresh.set("scope", scope)
		}
		tok, err := c.send(ctx, c.refreshURL, refresh, encodings(refreshToken))
		var ve *Error
		if err == nil || !errors.As(err, &ve) || (ve.Kind != KindRejected && ve.Kind != KindBadRequest) {
			return tok, err
		}
	}
	return c.send(ctx, c.url, c.fields, nil)
}

func (c *oauthCall) send(ctx context.Context, target string, body fields, extraSecrets []string) (*Token, error) {
	x := c.exchange
	x.url = target
	x.secrets = append(slices.Clip(x.secrets), extraSecrets...)
	x.header = http.Header{}
	c.auth.header(x.header)
	// A vendor that echoes the request's headers must not leak the Basic
	// credentials either.
	if _, cred, ok := strings.Cut(x.header.Get("Authorization"), " "); ok && cred != "" {
		x.secrets = append(x.secrets, cred)
	}
	x.accept = acceptFor(c.format)
	x.format = formatOAuth
	root := c.xmlRoots[body.get("grant_type")]
	// bound is the earliest exp of the assertions the last attempt sent
	// (attempts run one after another).
	var bound time.Time
	x.makeBody = func(now time.Time) (requestBody, error) {
		rb, exp, err := c.attemptBody(body, target, root, now)
		if err != nil {
			return requestBody{}, err
		}
		bound = exp
		return rb, nil
	}
	tok, err := x.do(ctx)
	if err == nil && c.expireWithAssertion {
		capToAssertion(tok, bound)
	}
	return tok, err
}

// attemptBody is the body of one attempt at target: body with the client
// authentication and the workload grant's assertion of this attempt (a
// fresh one each time), encoded, with the assertions as secrets to scrub
// from errors; exp is the earliest exp of those assertions (zero: none).
func (c *oauthCall) attemptBody(body fields, target, root string, now time.Time) (rb requestBody, exp time.Time, err error) {
	f := slices.Clone(body)
	if err := c.auth.body(&f, target, now); err != nil {
		return requestBody{}, time.Time{}, err
	}
	var grantSecret string
	if c.workload != nil && body.get("grant_type") == c.workload.grant {
		if exp, grantSecret, err = c.workload.body(&f, now); err != nil {
			return requestBody{}, time.Time{}, err
		}
	}
	if c.auth.assertionFile != "" {
		if aexp, ok := JWTExpiry(f.get("client_assertion")); ok && (exp.IsZero() || aexp.Before(exp)) {
			exp = aexp
		}
	}
	data, contentType, err := encodeBody(c.format, root, f.ordered(c.order))
	if err != nil {
		return requestBody{}, time.Time{}, &ConfigError{Setting: "body_format", Reason: err.Error()}
	}
	rb = requestBody{data: data, contentType: contentType}
	if v := f.get("client_assertion"); v != "" {
		rb.secrets = []string{v}
	}
	if grantSecret != "" {
		rb.secrets = append(rb.secrets, grantSecret)
	}
	return rb, exp, nil
}

// oauth2Info describes the generic vendor.
var oauth2Info = Info{
	ID:                  "oauth2",
	DisplayName:         "Generic OAuth 2.0 (RFC 6749)",
	GrantTypes:          []string{"client_credentials", "password", "refresh_token", grantJWTBearer, grantTokenExchange},
	RequiredCredentials: []string{"client_id"},
	OptionalCredentials: []string{"client_secret", "username", "password", "private_key"},
	Params:              []string{"scope"},
	Settings: []string{"grant_type", "client_auth", "scope", "audience", "resource", "body_format", "extra_params",
		"assertion_file", "assertion_issuer", "assertion_subject", "assertion_audience", "client_assertion_file",
		"subject_token_file", "subject_token_type", "requested_token_type", "expire_with_assertion"},
	DocumentationURL: "https://www.rfc-editor.org/rfc/rfc6749",
}

// OAuth2 is the generic, configurable RFC 6749 vendor, with the client
// authentication methods of RFC 7523 (client_secret_jwt, private_key_jwt)
// and RFC 8705 (tls_client_auth).
//
// Choices where the RFCs leave room:
//   - client_auth defaults to client_secret_basic (RFC 6749 section 2.3.1
//     makes it the one servers must support), id and secret form-encoded
//     before Base64.
//   - Client assertions (RFC 7523 section 3): header {"alg","typ":"JWT"}
//     without kid; claims iss = sub = client_id, aud = the token URL, a
//     128-bit random jti, iat now, exp 5 minutes later; a new assertion
//     for every attempt, so a retry never replays a jti. HS256 with
//     client_secret; RS256 (RSA of 2048 bits or more) or ES256 (P-256)
//     with the PEM credential private_key (PKCS #8, PKCS #1 or SEC 1).
//   - tls_client_auth sends client_id in the body and needs the
//     tls_client_cert and tls_client_key settings.
//   - The refresh grant repeats the configured scope (section 6 allows
//     it); a refusal (any 4xx) falls back to the primary grant.
//   - A credential the configuration does not send (a username with
//     client_credentials, a client_secret with private_key_jwt) is refused:
//     it would only split the cache.
func OAuth2() Strategy {
	return &oauthStrategy{info: oauth2Info, scopeParam: true}
}
