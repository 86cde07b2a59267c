package vendorsim

import (
	"fmt"
	"net/http"
	"time"
)

// brightPattern imitates Bright Pattern's Configuration API token endpoint.
// {host} stands for the tenant host the real request is sent to (its Host
// header); scope must equal it. client_id is the user's login id.
//
// The answer is exactly the document's example, which is not valid JSON:
// expires_in is a string and the object ends with a trailing comma.
//
// Chosen where the document is silent: errors are compact RFC 6749 section
// 5.2 JSON: invalid_client 401 (also for a user of another tenant host),
// invalid_scope, unsupported_grant_type and invalid_request 400 (wrong
// Content-Type, missing, empty, unknown or repeated parameter, an
// Authorization header).
var brightPattern = vendor{
	id:         idBrightPattern,
	paths:      []string{"/brightpattern/{host}/configapi/v2/oauth/token"},
	defaultTTL: 3599 * time.Second,
	serve:      serveBrightPattern,
	writeError: writeRFCError,
}

func serveBrightPattern(s *Sim, w http.ResponseWriter, r *http.Request) *tokenError {
	fields := []string{"grant_type", "client_id", "client_secret", "scope"}
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
	host := r.PathValue("host")
	want := map[string]string{"client_id": req["client_id"], "client_secret": req["client_secret"]}
	if _, ok := s.findAccount(idBrightPattern, want, map[string]string{"host": host}); !ok {
		return &tokenError{http.StatusUnauthorized, "invalid_client", ""}
	}
	if req["scope"] != host {
		return &tokenError{http.StatusBadRequest, "invalid_scope", "scope must be the tenant host"}
	}
	token, expiresIn := s.issueToken(idBrightPattern)
	writeBody(w, http.StatusOK, jsonType, fmt.Sprintf(
		"{\n\"access_token\":%s,\n\"token_type\":\"Bearer\",\n\"expires_in\":\"%d\",\n}", jsonString(token), expiresIn))
	return nil
}
