package vendorsim

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// genericOAuth2 is a plain RFC 6749 token endpoint: grants
// client_credentials (4.4), password (4.3) and refresh_token (6); client
// authentication by HTTP Basic with form-encoded id and secret (2.3.1) or by
// client_id and client_secret in the body; a form body, or a JSON object of
// string members when Content-Type is application/json.
//
// Answers are compact JSON (5.1) with token_type "bearer" in lower case, as
// many servers send it, scope when one was requested, and a refresh token
// for the password and refresh_token grants. Refresh tokens rotate (6 lets
// the server choose): the redeemed one is refused from then on.
//
// Workload identity (RFC 7523 sections 2.1 and 2.2, RFC 8693) is in
// federation.go.
//
// Choices where the RFC leaves room: unknown parameters are ignored (3.2);
// an Authorization header together with client_secret in the body, or with
// a client_id that differs from the header's, is invalid_request; a client
// without a secret, or an Authorization header that is not valid Basic, is
// invalid_client (401, with WWW-Authenticate when the header was used); an
// account with a "scope" restricts what may be requested (invalid_scope).
var genericOAuth2 = vendor{
	id:         idOAuth2,
	paths:      []string{"/oauth2/token"},
	defaultTTL: 3600 * time.Second,
	serve:      serveOAuth2,
	writeError: writeRFCError,
}

func serveOAuth2(s *Sim, w http.ResponseWriter, r *http.Request) *tokenError {
	req, e := readOAuth2Body(r)
	if e != nil {
		return e
	}
	if e := requireFields(req, "grant_type"); e != nil {
		return e
	}
	grantType := req["grant_type"]
	if isFederated(req) {
		return serveFederated(s, w, r, req)
	}
	if !slices.Contains([]string{"client_credentials", "password", "refresh_token"}, grantType) {
		return &tokenError{http.StatusBadRequest, "unsupported_grant_type", "supported: client_credentials, password, refresh_token, " + grantJWTBearer + ", " + grantTokenExchange}
	}
	clientID, secret, basic, e := oauth2Client(r, req)
	if e == nil {
		_, found := s.findAccount(idOAuth2, map[string]string{"client_id": clientID, "client_secret": secret}, nil)
		if !found {
			e = &tokenError{http.StatusUnauthorized, "invalid_client", "unknown client or wrong secret"}
		}
	}
	if e != nil {
		if e.code == "invalid_client" && basic {
			w.Header().Set("WWW-Authenticate", `Basic realm="vendorsim"`)
		}
		return e
	}
	client := map[string]string{"client_id": clientID, "client_secret": secret}

	var grant refreshGrant
	switch grantType {
	case "client_credentials":
		account, _ := s.findAccount(idOAuth2, client, nil)
		grant = refreshGrant{account: account, scope: req["scope"]}
	case "password":
		if e := requireFields(req, "username", "password"); e != nil {
			return e
		}
		client["username"], client["password"] = req["username"], req["password"]
		account, ok := s.findAccount(idOAuth2, client, nil)
		if !ok {
			return &tokenError{http.StatusBadRequest, "invalid_grant", "wrong username or password"}
		}
		grant = refreshGrant{account: account, scope: req["scope"]}
	case "refresh_token":
		if e := requireFields(req, "refresh_token"); e != nil {
			return e
		}
		// RFC 6749 section 6: the scope may narrow, never widen.
		scope := req["scope"]
		old, e := s.redeemRefreshToken(idOAuth2, clientID, req["refresh_token"], func(g refreshGrant) *tokenError {
			if scope != "" && g.scope != "" && !scopeWithin(scope, g.scope) {
				return &tokenError{http.StatusBadRequest, "invalid_scope", "scope exceeds the one originally granted"}
			}
			return nil
		})
		if e != nil {
			return e
		}
		grant = old
		if scope != "" {
			grant.scope = scope
		}
	}
	if allowed, ok := grant.account["scope"]; ok && !scopeWithin(grant.scope, allowed) {
		return &tokenError{http.StatusBadRequest, "invalid_scope", "scope not allowed for this client"}
	}

	answer := struct {
		AccessToken  string `json:"access_token"`
		TokenType    string `json:"token_type"`
		ExpiresIn    int64  `json:"expires_in"`
		RefreshToken string `json:"refresh_token,omitempty"`
		Scope        string `json:"scope,omitempty"`
	}{TokenType: "bearer", Scope: grant.scope}
	if grantType != "client_credentials" {
		grant.vendor, grant.clientID = idOAuth2, clientID
		answer.AccessToken, answer.ExpiresIn, answer.RefreshToken = s.issueGrant(idOAuth2, grant)
	} else {
		answer.AccessToken, answer.ExpiresIn = s.issueToken(idOAuth2)
	}
	body, _ := json.Marshal(answer) // strings and a number always marshal
	writeBody(w, http.StatusOK, jsonType, string(body))
	return nil
}

var oauth2Fields = []string{"grant_type", "client_id", "client_secret", "username", "password", "scope", "refresh_token",
	"assertion", "client_assertion", "client_assertion_type", "subject_token", "subject_token_type", "requested_token_type", "audience", "resource"}

// readOAuth2Body decodes a form or JSON body; unknown parameters are ignored.
func readOAuth2Body(r *http.Request) (map[string]string, *tokenError) {
	if mediaType(r) != "application/json" {
		return readForm(r, oauth2Fields, true)
	}
	body, e := readBody(r)
	if e != nil {
		return nil, e
	}
	req, err := decodeJSONObject(body, oauth2Fields, true)
	if err != nil {
		return nil, invalidRequest("%v", err)
	}
	return req, nil
}

// oauth2Client returns the client's credentials from the Authorization
// header (basic is then true) or from the body.
func oauth2Client(r *http.Request, req map[string]string) (id, secret string, basic bool, e *tokenError) {
	if r.Header.Get("Authorization") == "" {
		if req["client_id"] == "" || req["client_secret"] == "" {
			return "", "", false, &tokenError{http.StatusUnauthorized, "invalid_client", "client authentication required"}
		}
		return req["client_id"], req["client_secret"], false, nil
	}
	rawID, rawSecret, ok := r.BasicAuth()
	if !ok {
		return "", "", true, &tokenError{http.StatusUnauthorized, "invalid_client", "Authorization must be Basic"}
	}
	// RFC 6749 section 2.3.1: both are form-encoded before Basic encoding.
	id, errID := url.QueryUnescape(rawID)
	secret, errSecret := url.QueryUnescape(rawSecret)
	switch {
	case errID != nil || errSecret != nil || id == "" || secret == "":
		return "", "", true, &tokenError{http.StatusUnauthorized, "invalid_client", "malformed Basic credentials"}
	case req["client_secret"] != "" || (req["client_id"] != "" && req["client_id"] != id):
		return "", "", true, invalidRequest("use one client authentication method, not both")
	}
	return id, secret, true, nil
}

// scopeWithin reports whether every scope token of requested is in allowed.
func scopeWithin(requested, allowed string) bool {
	granted := strings.Fields(allowed)
	for _, scope := range strings.Fields(requested) {
		if !slices.Contains(granted, scope) {
			return false
		}
	}
	return true
}
