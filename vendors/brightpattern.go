package vendors

// Bright Pattern's Configuration API token endpoint, as "Request Access
// Token" (https://help.brightpattern.com/5.2:User-management-api-specification/RequestAccessToken) documents it: a form
// POST to http[s]://<host>/configapi/v2/oauth/token with
// grant_type=client_credentials, client_id (the user's login id),
// client_secret (the user's API secret) and scope (the tenant host); a JSON
// answer whose expires_in is a string and whose documented example ends
// with a trailing comma (response.go reads both). Nothing here is code.
//
// Choices where the document is vague:
//   - host is a setting and required (a ConfigError without it): the
//     tenant host decides where the secret goes, so a request can never
//     choose it. token_url defaults to https://{host}/configapi/v2/oauth/token;
//     http:// only on loopback, whatever the document's "http[s]" allows.
//   - scope ("the tenant or host URL") defaults to the host setting; set
//     the scope setting when the tenant's URL differs from the API host.
//   - client_id and client_secret travel in the form body
//     (client_secret_post), in the example's order: grant_type, client_id,
//     client_secret, scope.
//   - Lifetime: expires_in as a string ("3599"); without one, the JWT exp
//     claim (the example token is a JWT), else default_ttl.
//   - Errors: none documented; RFC 6749 section 5.2 JSON is read
//     (invalid_client is rejected credentials), 401/403 without a body too.
var brightPatternInfo = Info{
	ID:                  "brightpattern",
	DisplayName:         "Bright Pattern Configuration API",
	GrantTypes:          []string{"client_credentials"},
	RequiredCredentials: []string{"client_id", "client_secret"},
	Settings:            []string{"host", "scope"},
	DocumentationURL:    "https://help.brightpattern.com/5.2:User-management-api-specification/RequestAccessToken",
}

// BrightPattern is the Bright Pattern vendor.
func BrightPattern() Strategy {
	return &oauthStrategy{
		info: brightPatternInfo,
		defaults: Settings{
			"token_url":   "https://{host}/configapi/v2/oauth/token",
			"grant_type":  "client_credentials",
			"client_auth": authPost,
		},
		requiredSettings: []string{"host"},
		defaultsFrom:     map[string]string{"scope": "host"},
		order:            []string{"grant_type", "client_id", "client_secret", "scope"},
	}
}
