package vendors

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/tokenbroker/tokenbroker/secret"
)

// oauthStrategy is an RFC 6749 token endpoint described by data: the
// generic "oauth2" vendor, and every vendor whose only quirks are defaults
// (smartdocumentor). Settings (design section 5): token_url, grant_type
// (client_credentials, password), client_auth (client_secret_basic,
// client_secret_post), scope, audience, resource, body_format (form, json),
// extra_params.<name>, default_ttl.
type oauthStrategy struct {
	info     Info
	defaults Settings
	// scopeParam lets a request set the scope param when no scope setting
	// is configured.
	scopeParam bool
}

var _ Strategy = (*oauthStrategy)(nil)

func (s *oauthStrategy) Info() Info { return s.info }

// scopeSyntax is RFC 6749 section 3.3's scope-token alphabet, with spaces.
var scopeSyntax = regexp.MustCompile(`^[\x21\x23-\x5B\x5D-\x7E ]+$`)

func (s *oauthStrategy) Prepare(in Input) (Call, error) {
	set := s.defaults.Overlay(in.Settings)
	if err := checkCredentialNames(s.info, in.Credentials); err != nil {
		return nil, err
	}
	used := map[string]bool{}
	target, err := ResolveURL(set.String("token_url", ""), set, in.Params, used)
	if err != nil {
		return nil, err
	}
	form := url.Values{}
	grant := set.String("grant_type", "client_credentials")
	form.Set("grant_type", grant)
	switch grant {
	case "client_credentials":
	case "password":
		for _, name := range []string{"username", "password"} {
			if in.Credentials.Get(name) == "" {
				return nil, &ArgumentError{Field: "credentials." + name, Reason: "is required for the password grant"}
			}
			form.Set(name, in.Credentials.Get(name))
		}
	default:
		return nil, &ConfigError{Setting: "grant_type", Reason: fmt.Sprintf("%q is not supported (client_credentials, password)", grant)}
	}
	scope := set["scope"]
	if v, ok := in.Params["scope"]; ok && s.scopeParam {
		if scope != "" {
			return nil, &ArgumentError{Field: "params.scope", Reason: "the scope is fixed by the server configuration"}
		}
		if len(v) > 1024 || !scopeSyntax.MatchString(v) {
			return nil, &ArgumentError{Field: "params.scope", Reason: "is not an RFC 6749 scope (printable ASCII without \" and \\, space-separated)"}
		}
		scope, used["scope"] = v, true
	}
	if scope != "" {
		form.Set("scope", scope)
	}
	for _, name := range []string{"audience", "resource"} {
		if v := set[name]; v != "" {
			form.Set(name, v)
		}
	}
	for k, v := range set.Map("extra_params") {
		form.Set(k, v)
	}
	if err := checkParamsUsed(s.info, in.Params, used); err != nil {
		return nil, err
	}
	auth, err := newClientAuth(set, in)
	if err != nil {
		return nil, err
	}
	x, err := baseExchange(s.info.ID, target, set, in)
	if err != nil {
		return nil, err
	}
	return &oauthCall{exchange: x, form: form, auth: auth, jsonBody: set.String("body_format", "form") == "json"}, validBodyFormat(set)
}

func validBodyFormat(set Settings) error {
	if f := set.String("body_format", "form"); f != "form" && f != "json" {
		return &ConfigError{Setting: "body_format", Reason: fmt.Sprintf("%q is not form or json", f)}
	}
	return nil
}

// baseExchange fills what every exchange shares from the settings.
func baseExchange(vendor, target string, set Settings, in Input) (exchange, error) {
	defaultTTL, err := set.Duration("default_ttl", 0)
	if err != nil {
		return exchange{}, err
	}
	timeout, err := set.Duration("timeout", DefaultTimeout)
	if err != nil {
		return exchange{}, err
	}
	secrets := make([]string, 0, len(in.Credentials))
	for _, v := range in.Credentials {
		secrets = append(secrets, v.Reveal())
	}
	return exchange{
		vendor:     vendor,
		url:        target,
		defaultTTL: defaultTTL,
		timeout:    timeout,
		client:     in.HTTPClient,
		secrets:    secrets,
	}, nil
}

// clientAuth is how the client authenticates to the token endpoint
// (RFC 6749 section 2.3).
type clientAuth struct {
	method       string
	clientID     string
	clientSecret string
}

func newClientAuth(set Settings, in Input) (clientAuth, error) {
	a := clientAuth{
		method:       set.String("client_auth", "client_secret_basic"),
		clientID:     in.Credentials.Get("client_id"),
		clientSecret: in.Credentials.Get("client_secret"),
	}
	switch a.method {
	case "client_secret_basic", "client_secret_post":
		if a.clientID == "" {
			return a, &ArgumentError{Field: "credentials.client_id", Reason: "is required"}
		}
		if a.clientSecret == "" {
			return a, &ArgumentError{Field: "credentials.client_secret", Reason: "is required for " + a.method}
		}
	case "none":
		if a.clientID == "" {
			return a, &ArgumentError{Field: "credentials.client_id", Reason: "is required"}
		}
	default:
		return a, &ConfigError{Setting: "client_auth", Reason: fmt.Sprintf("%q is not supported", a.method)}
	}
	return a, nil
}

// apply adds the client's authentication to the form and headers.
func (a clientAuth) apply(form url.Values, x *exchange) {
	switch a.method {
	case "client_secret_basic":
		// RFC 6749 section 2.3.1: both parts form-encoded before Basic.
		cred := url.QueryEscape(a.clientID) + ":" + url.QueryEscape(a.clientSecret)
		if x.header == nil {
			x.header = map[string][]string{}
		}
		x.header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(cred)))
	case "client_secret_post":
		form.Set("client_id", a.clientID)
		form.Set("client_secret", a.clientSecret)
	case "none":
		form.Set("client_id", a.clientID)
	}
}

// oauthCall is a prepared RFC 6749 token request.
type oauthCall struct {
	exchange
	form     url.Values
	auth     clientAuth
	jsonBody bool
}

func (c *oauthCall) Target() string { return c.url }

func (c *oauthCall) Fetch(ctx context.Context, refreshToken string) (*Token, error) {
	if refreshToken != "" {
		refresh := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refreshToken}}
		if v := c.form.Get("scope"); v != "" {
			refresh.Set("scope", v)
		}
		tok, err := c.send(ctx, refresh, refreshToken)
		var ve *Error
		if err == nil || !errors.As(err, &ve) || ve.Kind != KindRejected {
			return tok, err
		}
		// The refresh token was revoked or expired: use the primary grant.
	}
	return c.send(ctx, c.form, "")
}

func (c *oauthCall) send(ctx context.Context, form url.Values, refreshToken string) (*Token, error) {
	x := c.exchange
	x.header = x.header.Clone()
	form = cloneValues(form)
	c.auth.apply(form, &x)
	if refreshToken != "" {
		x.secrets = append(slices.Clone(x.secrets), refreshToken)
	}
	if c.jsonBody {
		flat := make(map[string]string, len(form))
		for k := range form {
			flat[k] = form.Get(k)
		}
		x.body, _ = json.Marshal(flat)
		x.contentType = "application/json"
	} else {
		x.body = []byte(form.Encode())
		x.contentType = "application/x-www-form-urlencoded"
	}
	x.accept = "application/json"
	return x.do(ctx)
}

func cloneValues(v url.Values) url.Values {
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = slices.Clone(vs)
	}
	return out
}

// checkCredentialNames rejects credential keys the vendor does not use, so a
// typo is an error instead of a silently different cache entry.
func checkCredentialNames(info Info, creds secret.Map) error {
	for name := range creds {
		if !slices.Contains(info.RequiredCredentials, name) && !slices.Contains(info.OptionalCredentials, name) {
			return &ArgumentError{Field: "credentials." + name, Reason: fmt.Sprintf("is not a credential of vendor %s (expected %s)", info.ID, strings.Join(append(slices.Clone(info.RequiredCredentials), info.OptionalCredentials...), ", "))}
		}
	}
	for _, name := range info.RequiredCredentials {
		if creds[name].IsZero() {
			return &ArgumentError{Field: "credentials." + name, Reason: "is required"}
		}
	}
	return nil
}

// checkParamsUsed rejects params the vendor does not know.
func checkParamsUsed(info Info, params map[string]string, used map[string]bool) error {
	for name := range params {
		if !slices.Contains(info.Params, name) {
			return &ArgumentError{Field: "params." + name, Reason: fmt.Sprintf("is not a parameter of vendor %s", info.ID)}
		}
		if !used[name] {
			return &ArgumentError{Field: "params." + name, Reason: "is not used with this configuration"}
		}
	}
	return nil
}

// oauth2Info describes the generic vendor.
var oauth2Info = Info{
	ID:                  "oauth2",
	DisplayName:         "Generic OAuth 2.0 (RFC 6749)",
	GrantTypes:          []string{"client_credentials", "password", "refresh_token"},
	RequiredCredentials: []string{"client_id"},
	OptionalCredentials: []string{"client_secret", "username", "password"},
	Params:              []string{"scope"},
	Settings:            []string{"grant_type", "client_auth", "scope", "audience", "resource", "body_format", "extra_params"},
	DocumentationURL:    "https://www.rfc-editor.org/rfc/rfc6749",
}

// OAuth2 is the generic, configurable RFC 6749 vendor.
func OAuth2() Strategy {
	return &oauthStrategy{info: oauth2Info, scopeParam: true}
}

// RequestedScope is the scope the request asks for (the service answers it
// when the vendor returns none).
func (c *oauthCall) RequestedScope() string { return c.form.Get("scope") }
