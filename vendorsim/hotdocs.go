package vendorsim

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"time"
)

// hotDocsAdvance imitates HotDocs Advance's service principal log-in, cloud
// and on-premise (HdaAuth) forms. {tenancy} stands for the tenancy moniker
// that the real service takes from the host name.
//
// The document shows only the success (200, text/plain, the bare token).
// Chosen for the rest, as an ASP.NET Core service would answer, every error
// as a text/plain sentence:
//   - Content-Type other than application/json: 415;
//   - a body that is not one JSON object of exactly the string members
//     ClientName, PrincipalName and PrincipalPassword (missing, empty,
//     duplicated, unknown or non-string member): 400;
//   - a tenancy no account lives in: 404;
//   - wrong client name, principal name or password: 401.
var hotDocsAdvance = vendor{
	id: idHotDocs,
	paths: []string{
		"/hotdocs_advance/{tenancy}/auth/Authorize/ServicePrincipalLogIn",
		"/hotdocs_advance/{tenancy}/HdaAuth/Authorize/ServicePrincipalLogIn",
	},
	defaultTTL: time.Hour,
	serve:      serveHotDocs,
	writeError: func(w http.ResponseWriter, _ *http.Request, e *tokenError) {
		writeBody(w, e.status, "text/plain; charset=utf-8", e.description)
	},
}

var hotDocsFields = []string{"ClientName", "PrincipalName", "PrincipalPassword"}

func serveHotDocs(s *Sim, w http.ResponseWriter, r *http.Request) *tokenError {
	if mediaType(r) != "application/json" {
		return &tokenError{http.StatusUnsupportedMediaType, "invalid_request", "Content-Type must be application/json"}
	}
	body, e := readBody(r)
	if e != nil {
		return e
	}
	req, err := decodeJSONObject(body, hotDocsFields, false)
	if err != nil {
		return invalidRequest("%v", err)
	}
	if e := requireFields(req, hotDocsFields...); e != nil {
		return e
	}
	tenancy := r.PathValue("tenancy")
	if _, known := s.findAccount(idHotDocs, nil, map[string]string{"tenancy": tenancy}); !known {
		return &tokenError{http.StatusNotFound, "invalid_request", "Unknown tenancy."}
	}
	want := map[string]string{
		"client_name":        req["ClientName"],
		"principal_name":     req["PrincipalName"],
		"principal_password": req["PrincipalPassword"],
	}
	if _, ok := s.findAccount(idHotDocs, want, map[string]string{"tenancy": tenancy}); !ok {
		return &tokenError{http.StatusUnauthorized, "invalid_client", "Invalid client name, principal name or password."}
	}
	writeBody(w, http.StatusOK, "text/plain; charset=utf-8", s.issueHotDocsJWT(tenancy, req["PrincipalName"]))
	return nil
}

// issueHotDocsJWT issues a JWT whose exp claim carries the lifetime, which
// the real answer does not state anywhere else. Its signature is random
// bytes: clients only read the claims, nobody verifies it.
func (s *Sim) issueHotDocsJWT(tenancy, principal string) string {
	iat := time.Now().Unix()
	exp := iat + s.ttlSeconds(idHotDocs)
	claims, _ := json.Marshal(struct {
		Iss string `json:"iss"`
		Sub string `json:"sub"`
		Iat int64  `json:"iat"`
		Exp int64  `json:"exp"`
		Jti string `json:"jti"`
	}{"vendorsim/hotdocs_advance/" + tenancy, principal, iat, exp, randomToken()})
	enc := base64.RawURLEncoding
	token := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." +
		enc.EncodeToString(claims) + "." + randomToken()
	s.record(idHotDocs, token, time.Unix(exp, 0))
	return token
}
