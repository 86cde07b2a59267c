package vendors

// Saasu's password credential grant, as "POST authorisation/token"
// (https://api.saasu.com/Help/Api/POST-authorisation-token) documents it: a POST to
// https://api.saasu.com/authorisation/token of the
// OAuthPasswordCredentialsGrantRequest {grant_type=password, username,
// password, scope} as JSON (application/json, text/json) or XML
// (application/xml, text/xml); the answer, OAuthAccessTokenGrant, in JSON or
// XML, carries access_token, token_type, expires_in (10800), refresh_token
// and scope ("full fileid:15431 fileid:14078 fileid:2045"). Nothing here is
// code: the generic OAuth 2.0 strategy with this data is the whole vendor.
//
// Choices where the document is vague:
//   - body_format (setting, per vendor or profile): json (default) or xml,
//     sent as application/json or application/xml in the document's
//     sample layout (the XML with XmlSerializer's xmlns:xsd and xmlns:xsi
//     declarations), fields in its order. Accept names the same format, so
//     an XML request gets an XML answer; either answer is read by its
//     Content-Type.
//   - scope is a setting, "full" by default (the document's example); the
//     scope returned, file ids included, is passed through unchanged.
//   - No client authentication: the document's request has no client.
//   - Refresh (documented only in Saasu's authentication overview, not in
//     the token page above): refresh_url, https://api.saasu.com/authorisation/refresh
//     by default, receives {grant_type=refresh_token, refresh_token} in the
//     same body format (XML root OAuthRefreshTokenGrantRequest), without
//     scope (the original grant's scope is kept). When Saasu refuses the
//     refresh token (invalid_grant, or any other 4xx), the password grant
//     follows; a 5xx or network failure is returned as it is.
//   - Errors: none documented; {"error":"invalid_grant"} (JSON) or an XML
//     element with an <error> child are read like RFC 6749 section 5.2.
var saasuInfo = Info{
	ID:                  "saasu",
	DisplayName:         "Saasu",
	GrantTypes:          []string{"password", "refresh_token"},
	RequiredCredentials: []string{"username", "password"},
	Settings:            []string{"refresh_url", "body_format", "scope"},
	DocumentationURL:    "https://api.saasu.com/Help/Api/POST-authorisation-token",
}

// Saasu is the Saasu vendor.
func Saasu() Strategy {
	return &oauthStrategy{
		info: saasuInfo,
		defaults: Settings{
			"token_url":   "https://api.saasu.com/authorisation/token",
			"refresh_url": "https://api.saasu.com/authorisation/refresh",
			"grant_type":  "password",
			"client_auth": authNone,
			"scope":       "full",
		},
		bodyFormats: []string{bodyJSON, bodyXML},
		xmlRoots: map[string]string{
			"password":      "OAuthPasswordCredentialsGrantRequest",
			"refresh_token": "OAuthRefreshTokenGrantRequest",
		},
		order:               []string{"grant_type", "username", "password", "scope"},
		refreshWithoutScope: true,
	}
}
