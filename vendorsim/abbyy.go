package vendorsim

import (
	"fmt"
	"net/http"
	"slices"
	"time"
)

// abbyyVantage imitates ABBYY Vantage's token endpoint (IdentityServer
// "auth2/connect/token") in its regions, with or without the tenant id.
// {region} stands for the vantage-{region}.abbyy.com host.
//
// Both documented grants need scope exactly "openid permissions
// global.wildcard": password (username, password, client_id, client_secret)
// and client_credentials (client_id, client_secret). The answer is the
// 2-space indented JSON of ABBYY's published sample (access_token,
// expires_in, token_type, scope).
//
// Chosen where the document is silent: errors are RFC 6749 section 5.2 JSON
// (invalid_client 401, invalid_grant for a wrong user or password 400,
// invalid_scope, unsupported_grant_type and invalid_request 400); an unknown
// region is a 404 invalid_request (there is no such host); unknown, empty
// or repeated parameters and an Authorization header are invalid_request,
// and so are username or password sent with client_credentials. An account
// with a "tenant_id" is refused on the route of another tenant id.
var abbyyVantage = vendor{
	id: idAbbyy,
	paths: []string{
		"/abbyy_vantage/{region}/auth2/connect/token",
		"/abbyy_vantage/{region}/auth2/{tenantId}/connect/token",
	},
	defaultTTL: 30 * 24 * time.Hour,
	serve:      serveAbbyy,
	writeError: writeRFCError,
}

const abbyyScope = "openid permissions global.wildcard"

func serveAbbyy(s *Sim, w http.ResponseWriter, r *http.Request) *tokenError {
	region := r.PathValue("region")
	if !slices.Contains([]string{"eu", "us", "au"}, region) {
		return &tokenError{http.StatusNotFound, "invalid_request", "unknown region " + region}
	}
	if e := postOnlyClientAuth(r); e != nil {
		return e
	}
	req, e := readForm(r, []string{"grant_type", "scope", "username", "password", "client_id", "client_secret"}, false)
	if e != nil {
		return e
	}
	if e := requireFields(req, "grant_type"); e != nil {
		return e
	}
	switch req["grant_type"] {
	case "password":
		e = requireFields(req, "client_id", "client_secret", "username", "password", "scope")
	case "client_credentials":
		e = requireFields(req, "client_id", "client_secret", "scope")
		if e == nil && (req["username"] != "" || req["password"] != "") {
			e = invalidRequest("username and password belong to the password grant")
		}
	default:
		return &tokenError{http.StatusBadRequest, "unsupported_grant_type", ""}
	}
	if e != nil {
		return e
	}
	restrict := map[string]string{"region": region}
	if tenant := r.PathValue("tenantId"); tenant != "" {
		restrict["tenant_id"] = tenant
	}
	want := map[string]string{"client_id": req["client_id"], "client_secret": req["client_secret"]}
	if _, ok := s.findAccount(idAbbyy, want, restrict); !ok {
		return &tokenError{http.StatusUnauthorized, "invalid_client", ""}
	}
	if req["grant_type"] == "password" {
		want["username"], want["password"] = req["username"], req["password"]
		if _, ok := s.findAccount(idAbbyy, want, restrict); !ok {
			return &tokenError{http.StatusBadRequest, "invalid_grant", "invalid_username_or_password"}
		}
	}
	if req["scope"] != abbyyScope {
		return &tokenError{http.StatusBadRequest, "invalid_scope", ""}
	}
	token, expiresIn := s.issueToken(idAbbyy)
	writeBody(w, http.StatusOK, jsonType, fmt.Sprintf(
		"{\n  \"access_token\": %s,\n  \"expires_in\": %d,\n  \"token_type\": \"Bearer\",\n  \"scope\": %s\n}",
		jsonString(token), expiresIn, jsonString(abbyyScope)))
	return nil
}
