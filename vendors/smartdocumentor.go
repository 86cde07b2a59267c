package vendors

// SmartDocumentor's client credentials flow, as its "[POST] Client
// Credentials Access Token" page documents it: a form-encoded POST to
// https://cloud.smartdocumentor.net/connect/token with grant_type
// client_credentials, scope WebAPI ("MUST always be WebAPI"), client_id and
// client_secret in the body (client_secret_post); a JSON answer with a
// numeric expires_in (3600 by default); {"error":"invalid_client"} for a
// wrong pair. Nothing here is code: the generic OAuth 2.0 strategy with
// these defaults is the whole vendor.

var smartDocumentorInfo = Info{
	ID:                  "smartdocumentor",
	DisplayName:         "SmartDocumentor",
	GrantTypes:          []string{"client_credentials"},
	RequiredCredentials: []string{"client_id", "client_secret"},
	Settings:            []string{"scope"},
	DocumentationURL:    "https://cloud.smartdocumentor.net/docs/api/authentication/client-credentials-access-token/",
}

// SmartDocumentor is the SmartDocumentor vendor.
func SmartDocumentor() Strategy {
	return &oauthStrategy{
		info: smartDocumentorInfo,
		defaults: Settings{
			"token_url":   "https://cloud.smartdocumentor.net/connect/token",
			"grant_type":  "client_credentials",
			"client_auth": "client_secret_post",
			"scope":       "WebAPI",
		},
	}
}
