package vendorsim

import (
	"fmt"
	"net/http"
	"time"
)

// smartDocumentor imitates SmartDocumentor's client credentials token
// endpoint (an IdentityServer "connect/token"): a form with exactly
// grant_type=client_credentials, scope=WebAPI, client_id and client_secret.
// Answers and errors use the document's layout: 4-space indented JSON.
//
// The document shows only invalid_client; as IdentityServer does, every
// error is a 400 with the RFC 6749 code in that layout: unsupported_grant_type,
// invalid_scope, and invalid_request for a wrong Content-Type or a missing,
// empty, duplicated or unknown parameter. Client authentication is
// client_secret_post only, so an Authorization header is invalid_request.
var smartDocumentor = vendor{
	id:         idSmartDocumentor,
	paths:      []string{"/smartdocumentor/connect/token"},
	defaultTTL: 3600 * time.Second,
	serve:      serveSmartDocumentor,
	writeError: func(w http.ResponseWriter, _ *http.Request, e *tokenError) {
		writeBody(w, e.status, jsonType, "{\n    \"error\": "+jsonString(e.code)+"\n}")
	},
}

func serveSmartDocumentor(s *Sim, w http.ResponseWriter, r *http.Request) *tokenError {
	fields := []string{"grant_type", "scope", "client_id", "client_secret"}
	if e := postOnlyClientAuth(r); e != nil {
		return e
	}
	req, e := readForm(r, fields, false)
	if e != nil {
		return e
	}
	if e := requireFields(req, fields...); e != nil {
		return e
	}
	if req["grant_type"] != "client_credentials" {
		return &tokenError{http.StatusBadRequest, "unsupported_grant_type", ""}
	}
	want := map[string]string{"client_id": req["client_id"], "client_secret": req["client_secret"]}
	if _, ok := s.findAccount(idSmartDocumentor, want, nil); !ok {
		return &tokenError{http.StatusBadRequest, "invalid_client", ""}
	}
	if req["scope"] != "WebAPI" {
		return &tokenError{http.StatusBadRequest, "invalid_scope", ""}
	}
	token, expiresIn := s.issueToken(idSmartDocumentor)
	writeBody(w, http.StatusOK, jsonType, fmt.Sprintf(
		"{\n    \"access_token\": %s,\n    \"expires_in\": %d,\n    \"token_type\": \"Bearer\",\n    \"scope\": \"WebAPI\"\n}",
		jsonString(token), expiresIn))
	return nil
}

// postOnlyClientAuth refuses an Authorization header at an endpoint whose
// document authenticates the client in the body (client_secret_post): RFC
// 6749 section 2.3 forbids using two methods, and a client that sends the
// header there is not following the document.
func postOnlyClientAuth(r *http.Request) *tokenError {
	if r.Header.Get("Authorization") != "" {
		return invalidRequest("send client_id and client_secret in the body, not in an Authorization header")
	}
	return nil
}
