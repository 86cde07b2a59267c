package vendors

// ABBYY Vantage's token endpoint, as "Resource Owner Password Credentials"
// (https://help.abbyy.com/en-us/vantage/1/developer/developer_apiauthentication_ropc) documents it: a form POST to
// https://vantage-{eu,us,au}.abbyy.com/auth2/connect/token, or
// .../auth2/{tenantId}/connect/token for an e-mail address in several
// tenants, with grant_type=password, scope "openid permissions
// global.wildcard", username, password, client_id and client_secret.
// Nothing here is code: the generic OAuth 2.0 strategy with this data is
// the whole vendor.
//
// Choices where the document is vague:
//   - region is a request param from the fixed set eu, us, au (the three
//     documented hosts); anything else is INVALID_ARGUMENT before any
//     request. tenant_id, when given, selects tenant_token_url and must be
//     one URL path segment. The deprecated /auth resources are not used.
//   - grant_type and scope are settings ("put them in your configuration
//     files"), password and "openid permissions global.wildcard" by
//     default; client_credentials (ABBYY's client credentials page, same
//     endpoint and scope) sends no username or password, and passing them
//     is refused rather than silently ignored.
//   - client_id and client_secret travel in the form body
//     (client_secret_post), as the document's parameter table lists them;
//     the fields follow the table's order.
//   - Lifetime: the answer's expires_in (2592000, 30 days); default_ttl
//     is 30 days for an answer without one.
//   - Errors: none documented; the endpoint is IdentityServer, so RFC 6749
//     section 5.2 JSON (invalid_client and invalid_grant are rejected
//     credentials).
var abbyyInfo = Info{
	ID:                  "abbyy_vantage",
	DisplayName:         "ABBYY Vantage",
	GrantTypes:          []string{"password", "client_credentials"},
	RequiredCredentials: []string{"client_id", "client_secret"},
	OptionalCredentials: []string{"username", "password"},
	Params:              []string{"region", "tenant_id"},
	TargetParams:        []string{"region", "tenant_id"},
	Settings:            []string{"tenant_token_url", "grant_type", "scope"},
	DocumentationURL:    "https://help.abbyy.com/en-us/vantage/1/developer/developer_apiauthentication_ropc",
}

// AbbyyVantage is the ABBYY Vantage vendor.
func AbbyyVantage() Strategy {
	return &oauthStrategy{
		info: abbyyInfo,
		defaults: Settings{
			"token_url":        "https://vantage-{region}.abbyy.com/auth2/connect/token",
			"tenant_token_url": "https://vantage-{region}.abbyy.com/auth2/{tenant_id}/connect/token",
			"grant_type":       "password",
			"client_auth":      authPost,
			"scope":            "openid permissions global.wildcard",
			"default_ttl":      "720h",
		},
		oneOf:      map[string][]string{"region": {"eu", "us", "au"}},
		urlByParam: map[string]string{"tenant_id": "tenant_token_url"},
		order:      []string{"grant_type", "scope", "username", "password", "client_id", "client_secret"},
	}
}
