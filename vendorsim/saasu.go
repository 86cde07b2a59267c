package vendorsim

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"mime"
	"net/http"
	"strings"
	"time"
)

// saasu imitates Saasu's password credential grant (POST
// authorisation/token) and its refresh (POST authorisation/refresh), an
// ASP.NET Web API that reads and writes JSON or XML.
//
// The token request is the document's OAuthPasswordCredentialsGrantRequest,
// as JSON (application/json, text/json) or XML (application/xml, text/xml),
// with exactly grant_type=password, username, password and scope. The answer
// is the document's OAuthAccessTokenGrant in the format the Accept header
// names (its first json or xml media type, q-values ignored), else in the
// request's format; scope is the requested one followed by the account's
// file ids ("full fileid:15431 ...").
//
// Chosen where the document is silent:
//   - only scope "full", the one the document names, is granted; another is
//     invalid_scope;
//   - the refresh endpoint (not on the token page the package comment cites) is taken to accept what an
//     ASP.NET Web API with the default formatters accepts: a form
//     (application/x-www-form-urlencoded, the usual OAuth encoding), JSON, or
//     XML with root element OAuthRefreshTokenGrantRequest; each holds exactly
//     grant_type=refresh_token and refresh_token. A form request is answered
//     in JSON unless Accept says XML;
//   - refresh tokens rotate: each refresh returns a new pair and the
//     redeemed refresh token is refused from then on, with invalid_grant;
//   - errors are 400 {"error":"<code>"} (invalid_grant for a wrong user,
//     password or refresh token; unsupported_grant_type; invalid_scope;
//     invalid_request), or in XML <OAuthError> with one <error> child, in
//     the answer format; an unsupported Content-Type is a 415.
var saasu = vendor{
	id:         idSaasu,
	paths:      []string{"/saasu/authorisation/token", "/saasu/authorisation/refresh"},
	defaultTTL: 10800 * time.Second,
	serve:      serveSaasu,
	writeError: writeSaasuError,
}

const xmlSerializerNS = `xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"`

// saasuDefaultFileIDs are the file ids of the document's example answer.
const saasuDefaultFileIDs = "15431 14078 2045"

// saasuFormat is an answer format: XML or JSON, with its Content-Type.
type saasuFormat struct {
	xml         bool
	contentType string
}

func saasuFormatOf(mediaType string) (saasuFormat, bool) {
	switch mediaType {
	case "application/json", "text/json":
		return saasuFormat{false, mediaType + "; charset=utf-8"}, true
	case "application/xml", "text/xml":
		return saasuFormat{true, mediaType + "; charset=utf-8"}, true
	}
	return saasuFormat{}, false
}

// saasuAnswerFormat picks the answer format from Accept, else Content-Type,
// else JSON.
func saasuAnswerFormat(r *http.Request) saasuFormat {
	for _, accept := range r.Header.Values("Accept") {
		for _, mediaRange := range strings.Split(accept, ",") {
			if mt, _, err := mime.ParseMediaType(mediaRange); err == nil {
				if f, ok := saasuFormatOf(mt); ok {
					return f
				}
			}
		}
	}
	if f, ok := saasuFormatOf(mediaType(r)); ok {
		return f
	}
	f, _ := saasuFormatOf("application/json")
	return f
}

func writeSaasuError(w http.ResponseWriter, r *http.Request, e *tokenError) {
	f := saasuAnswerFormat(r)
	if f.xml {
		writeBody(w, e.status, f.contentType, "<OAuthError "+xmlSerializerNS+">\n  <error>"+xmlText(e.code)+"</error>\n</OAuthError>")
		return
	}
	writeBody(w, e.status, f.contentType, `{"error":`+jsonString(e.code)+`}`)
}

func serveSaasu(s *Sim, w http.ResponseWriter, r *http.Request) *tokenError {
	if strings.HasSuffix(r.URL.Path, "/refresh") {
		return serveSaasuRefresh(s, w, r)
	}
	fields := []string{"grant_type", "username", "password", "scope"}
	req, e := readSaasuBody(r, "OAuthPasswordCredentialsGrantRequest", fields, false)
	if e != nil {
		return e
	}
	if e := requireFields(req, "grant_type"); e != nil {
		return e
	}
	if req["grant_type"] != "password" {
		return &tokenError{http.StatusBadRequest, "unsupported_grant_type", ""}
	}
	if e := requireFields(req, fields...); e != nil {
		return e
	}
	account, ok := s.findAccount(idSaasu, map[string]string{"username": req["username"], "password": req["password"]}, nil)
	if !ok {
		return &tokenError{http.StatusBadRequest, "invalid_grant", ""}
	}
	if req["scope"] != "full" {
		return &tokenError{http.StatusBadRequest, "invalid_scope", ""}
	}
	fileIDs, ok := account["file_ids"]
	if !ok {
		fileIDs = saasuDefaultFileIDs
	}
	scope := req["scope"]
	for _, id := range strings.Fields(fileIDs) {
		scope += " fileid:" + id
	}
	writeSaasuGrant(s, w, r, refreshGrant{vendor: idSaasu, account: account, scope: scope})
	return nil
}

func serveSaasuRefresh(s *Sim, w http.ResponseWriter, r *http.Request) *tokenError {
	fields := []string{"grant_type", "refresh_token"}
	req, e := readSaasuBody(r, "OAuthRefreshTokenGrantRequest", fields, true)
	if e != nil {
		return e
	}
	if e := requireFields(req, "grant_type"); e != nil {
		return e
	}
	if req["grant_type"] != "refresh_token" {
		return &tokenError{http.StatusBadRequest, "unsupported_grant_type", ""}
	}
	if e := requireFields(req, "refresh_token"); e != nil {
		return e
	}
	grant, e := s.redeemRefreshToken(idSaasu, "", req["refresh_token"], nil)
	if e != nil {
		return &tokenError{e.status, e.code, ""} // Saasu sends no description
	}
	writeSaasuGrant(s, w, r, grant)
	return nil
}

// readSaasuBody decodes a JSON or XML body (or a form, when allowed) of
// exactly fields.
func readSaasuBody(r *http.Request, xmlRoot string, fields []string, formAllowed bool) (map[string]string, *tokenError) {
	mt := mediaType(r)
	if formAllowed && mt == "application/x-www-form-urlencoded" {
		return readForm(r, fields, false)
	}
	format, ok := saasuFormatOf(mt)
	if !ok {
		return nil, &tokenError{http.StatusUnsupportedMediaType, "invalid_request", "unsupported Content-Type"}
	}
	body, e := readBody(r)
	if e != nil {
		return nil, e
	}
	var req map[string]string
	var err error
	if format.xml {
		req, err = decodeXMLElement(body, xmlRoot, fields)
	} else {
		req, err = decodeJSONObject(body, fields, false)
	}
	if err != nil {
		return nil, invalidRequest("%v", err)
	}
	return req, nil
}

// writeSaasuGrant issues an access token and a refresh token for grant and
// writes them in the document's OAuthAccessTokenGrant layout.
func writeSaasuGrant(s *Sim, w http.ResponseWriter, r *http.Request, grant refreshGrant) {
	token, expiresIn, refreshToken := s.issueGrant(idSaasu, grant)
	f := saasuAnswerFormat(r)
	var body string
	if f.xml {
		body = fmt.Sprintf("<OAuthAccessTokenGrant %s>\n"+
			"  <access_token>%s</access_token>\n"+
			"  <token_type>Bearer</token_type>\n"+
			"  <expires_in>%d</expires_in>\n"+
			"  <refresh_token>%s</refresh_token>\n"+
			"  <scope>%s</scope>\n"+
			"</OAuthAccessTokenGrant>",
			xmlSerializerNS, xmlText(token), expiresIn, xmlText(refreshToken), xmlText(grant.scope))
	} else {
		body = fmt.Sprintf("{\n"+
			"  \"access_token\": %s,\n"+
			"  \"token_type\": \"Bearer\",\n"+
			"  \"expires_in\": %d,\n"+
			"  \"refresh_token\": %s,\n"+
			"  \"scope\": %s\n"+
			"}",
			jsonString(token), expiresIn, jsonString(refreshToken), jsonString(grant.scope))
	}
	writeBody(w, http.StatusOK, f.contentType, body)
}

// xmlText escapes s for XML character data.
func xmlText(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s)) // a bytes.Buffer never fails
	return b.String()
}
