package vendorsim

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

const (
	hotDocsCloud   = "/hotdocs_advance/yourtenancy/auth/Authorize/ServicePrincipalLogIn"
	hotDocsOnPrem  = "/hotdocs_advance/yourtenancy/HdaAuth/Authorize/ServicePrincipalLogIn"
	smartDocPath   = "/smartdocumentor/connect/token"
	abbyyPath      = "/abbyy_vantage/eu/auth2/connect/token"
	brightPath     = "/brightpattern/example.com/configapi/v2/oauth/token"
	saasuToken     = "/saasu/authorisation/token"
	saasuRefresh   = "/saasu/authorisation/refresh"
	oauth2Path     = "/oauth2/token"
	hotDocsExample = `{
    "ClientName": "yourTenancy17ABSHVJL",
    "PrincipalName": "ExamplePrincipal01",
    "PrincipalPassword": "examplepassword"
}`
	smartDocExample = "grant_type=client_credentials&scope=WebAPI&client_id=%7Byour+Client+ID%7D&client_secret=%7Byour+Client+Secret%7D"
	abbyyPassword   = "grant_type=password&scope=openid+permissions+global.wildcard&username=demo%40example.com&password=demo-password&client_id=demo-client&client_secret=demo-secret"
	brightExample   = "grant_type=client_credentials&client_id=clientid&client_secret=qkDwDJlDfig2IpeuUZYKH1Wb8q1V0ju6sILxQQqhJ&scope=example.com"
	saasuJSON       = `{
  "grant_type": "password",
  "username": "test@host.com",
  "password": "StrongPassword",
  "scope": "full"
}`
	saasuXML = `<OAuthPasswordCredentialsGrantRequest ` + xmlNS + `>
  <grant_type>password</grant_type>
  <username>test@host.com</username>
  <password>StrongPassword</password>
  <scope>full</scope>
</OAuthPasswordCredentialsGrantRequest>`
	saasuJSONAnswer = `{
  "access_token": "<token>",
  "token_type": "Bearer",
  "expires_in": 10800,
  "refresh_token": "<refresh>",
  "scope": "full fileid:15431 fileid:14078 fileid:2045"
}`
	saasuXMLAnswer = `<OAuthAccessTokenGrant ` + xmlNS + `>
  <access_token><token></access_token>
  <token_type>Bearer</token_type>
  <expires_in>10800</expires_in>
  <refresh_token><refresh></refresh_token>
  <scope>full fileid:15431 fileid:14078 fileid:2045</scope>
</OAuthAccessTokenGrant>`
)

// basic returns an RFC 6749 section 2.3.1 Authorization header value.
func basic(id, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))
}

func TestDocumentedRequestIsAnsweredInDocumentedLayout(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name            string
		vendor          string
		req             call
		wantContentType string
		wantBody        string
	}{
		{"hotdocs cloud", idHotDocs, call{path: hotDocsCloud, contentType: "application/json; charset=utf-8", body: hotDocsExample},
			"text/plain; charset=utf-8", "<token>"},
		{"hotdocs on-premise", idHotDocs, call{path: hotDocsOnPrem, contentType: jsonCT, body: hotDocsExample},
			"text/plain; charset=utf-8", "<token>"},
		{"smartdocumentor", idSmartDocumentor, call{path: smartDocPath, contentType: formType, body: smartDocExample},
			"application/json; charset=utf-8", "{\n    \"access_token\": \"<token>\",\n    \"expires_in\": 3600,\n    \"token_type\": \"Bearer\",\n    \"scope\": \"WebAPI\"\n}"},
		{"abbyy password", idAbbyy, call{path: abbyyPath, contentType: formType, body: abbyyPassword},
			"application/json; charset=utf-8", "{\n  \"access_token\": \"<token>\",\n  \"expires_in\": 2592000,\n  \"token_type\": \"Bearer\",\n  \"scope\": \"openid permissions global.wildcard\"\n}"},
		{"abbyy client credentials with tenant", idAbbyy, call{path: "/abbyy_vantage/us/auth2/tenant-1/connect/token", contentType: formType,
			body: "client_id=tenant-client&client_secret=tenant-secret&grant_type=client_credentials&scope=openid%20permissions%20global.wildcard"},
			"application/json; charset=utf-8", "{\n  \"access_token\": \"<token>\",\n  \"expires_in\": 2592000,\n  \"token_type\": \"Bearer\",\n  \"scope\": \"openid permissions global.wildcard\"\n}"},
		{"brightpattern", idBrightPattern, call{path: brightPath, contentType: formType, body: brightExample},
			"application/json; charset=utf-8", "{\n\"access_token\":\"<token>\",\n\"token_type\":\"Bearer\",\n\"expires_in\":\"3599\",\n}"},
		{"saasu json", idSaasu, call{path: saasuToken, contentType: jsonCT, body: saasuJSON},
			"application/json; charset=utf-8", saasuJSONAnswer},
		{"saasu text/json", idSaasu, call{path: saasuToken, contentType: "text/json", body: saasuJSON},
			"text/json; charset=utf-8", saasuJSONAnswer},
		{"saasu xml", idSaasu, call{path: saasuToken, contentType: "application/xml", body: saasuXML},
			"application/xml; charset=utf-8", saasuXMLAnswer},
		{"saasu xml without namespaces, answer by Accept", idSaasu, call{path: saasuToken, contentType: "text/xml",
			header: map[string]string{"Accept": "application/json"},
			body:   "<OAuthPasswordCredentialsGrantRequest><scope>full</scope><password>StrongPassword</password><username>test@host.com</username><grant_type>password</grant_type></OAuthPasswordCredentialsGrantRequest>"},
			"application/json; charset=utf-8", saasuJSONAnswer},
		{"saasu json, xml by Accept", idSaasu, call{path: saasuToken, contentType: jsonCT,
			header: map[string]string{"Accept": "text/html, text/xml;q=0.9, */*"}, body: saasuJSON},
			"text/xml; charset=utf-8", saasuXMLAnswer},
		{"oauth2 client credentials, basic", idOAuth2, call{path: oauth2Path, contentType: formType,
			header: map[string]string{"Authorization": basic("client:1", "s3cr/t+&=%")}, body: "grant_type=client_credentials&scope=read&audience=ignored"},
			"application/json; charset=utf-8", `{"access_token":"<token>","token_type":"bearer","expires_in":3600,"scope":"read"}`},
		{"oauth2 client credentials, post, no scope", idOAuth2, call{path: oauth2Path, contentType: formType,
			body: "grant_type=client_credentials&client_id=demo-client&client_secret=demo-secret"},
			"application/json; charset=utf-8", `{"access_token":"<token>","token_type":"bearer","expires_in":3600}`},
		{"oauth2 password, json body", idOAuth2, call{path: oauth2Path, contentType: jsonCT,
			body: `{"grant_type":"password","client_id":"demo-client","client_secret":"demo-secret","username":"demo-user","password":"demo-password","extra":{"n":1}}`},
			"application/json; charset=utf-8", `{"access_token":"<token>","token_type":"bearer","expires_in":3600,"refresh_token":"<refresh>"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sim, srv := newTestServer(t)
			resp, body := tt.req.do(t, srv)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status = %d, body %q; want 200", resp.StatusCode, body)
			}
			if got := resp.Header.Get("Content-Type"); got != tt.wantContentType {
				t.Errorf("Content-Type = %q, want %q", got, tt.wantContentType)
			}
			if got := resp.Header.Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control = %q, want no-store", got)
			}
			masked, tokens := maskTokens(body)
			if masked != tt.wantBody {
				t.Errorf("body =\n%s\nwant\n%s", masked, tt.wantBody)
			}
			if len(tokens) == 0 || !sim.ValidToken(tt.vendor, tokens[0]) {
				t.Errorf("ValidToken(%q, access token) = false, want true", tt.vendor)
			}
			if len(tokens) > 1 && sim.ValidToken(tt.vendor, tokens[1]) {
				t.Error("the refresh token is valid as an access token")
			}
			if sim.Requests(tt.vendor) != 1 || sim.Issued(tt.vendor) != 1 {
				t.Errorf("Requests, Issued = %d, %d; want 1, 1", sim.Requests(tt.vendor), sim.Issued(tt.vendor))
			}
		})
	}
}

func TestHotDocsTokenIsJWTWithLifetime(t *testing.T) {
	t.Parallel()
	_, srv := newTestServer(t, WithTokenTTL(90*time.Second))
	_, body := call{path: hotDocsCloud, contentType: jsonCT, body: hotDocsExample}.do(t, srv)
	parts := strings.Split(body, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q is not a JWT", body)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims struct{ Iat, Exp int64 }
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	if claims.Exp-claims.Iat != 90 {
		t.Errorf("exp - iat = %d, want 90", claims.Exp-claims.Iat)
	}
	if now := time.Now().Unix(); claims.Iat < now-5 || claims.Iat > now {
		t.Errorf("iat = %d, now %d", claims.Iat, now)
	}
}

func TestDeviationsAreRejected(t *testing.T) {
	t.Parallel()
	saasuXMLWith := func(old, new string) string { return strings.Replace(saasuXML, old, new, 1) }
	tests := []struct {
		name       string
		vendor     string
		req        call
		wantStatus int
		wantError  string // the JSON or XML "error"; "" for text/plain vendors
		wantBody   string // whole body, when the layout is documented
		wantHeader map[string]string
	}{
		// HotDocs Advance: text/plain errors.
		{name: "hotdocs wrong password", vendor: idHotDocs, req: call{path: hotDocsCloud, contentType: jsonCT, body: strings.Replace(hotDocsExample, "examplepassword", "nope", 1)},
			wantStatus: 401, wantBody: "Invalid client name, principal name or password."},
		{name: "hotdocs unknown tenancy", vendor: idHotDocs, req: call{path: "/hotdocs_advance/other/auth/Authorize/ServicePrincipalLogIn", contentType: jsonCT, body: hotDocsExample},
			wantStatus: 404, wantBody: "Unknown tenancy."},
		{name: "hotdocs account of another tenancy", vendor: idHotDocs, req: call{path: "/hotdocs_advance/demo/auth/Authorize/ServicePrincipalLogIn", contentType: jsonCT, body: hotDocsExample},
			wantStatus: 401},
		{name: "hotdocs form body", vendor: idHotDocs, req: call{path: hotDocsCloud, contentType: formType, body: "ClientName=a&PrincipalName=b&PrincipalPassword=c"},
			wantStatus: 415},
		{name: "hotdocs missing member", vendor: idHotDocs, req: call{path: hotDocsCloud, contentType: jsonCT, body: `{"ClientName":"yourTenancy17ABSHVJL","PrincipalName":"ExamplePrincipal01"}`},
			wantStatus: 400, wantBody: `missing parameter "PrincipalPassword"`},
		{name: "hotdocs duplicated member", vendor: idHotDocs, req: call{path: hotDocsCloud, contentType: jsonCT, body: strings.Replace(hotDocsExample, "\n}", `,"ClientName":"x"}`, 1)},
			wantStatus: 400, wantBody: `member "ClientName" appears more than once`},
		{name: "hotdocs unknown member", vendor: idHotDocs, req: call{path: hotDocsCloud, contentType: jsonCT, body: strings.Replace(hotDocsExample, "\n}", `,"Tenancy":"x"}`, 1)},
			wantStatus: 400},
		{name: "hotdocs member of other case", vendor: idHotDocs, req: call{path: hotDocsCloud, contentType: jsonCT, body: strings.Replace(hotDocsExample, "ClientName", "clientName", 1)},
			wantStatus: 400},
		{name: "hotdocs non-string member", vendor: idHotDocs, req: call{path: hotDocsCloud, contentType: jsonCT, body: strings.Replace(hotDocsExample, `"examplepassword"`, `null`, 1)},
			wantStatus: 400},
		{name: "hotdocs trailing comma", vendor: idHotDocs, req: call{path: hotDocsCloud, contentType: jsonCT, body: strings.Replace(hotDocsExample, "\n}", ",\n}", 1)},
			wantStatus: 400},
		{name: "hotdocs GET", vendor: idHotDocs, req: call{method: http.MethodGet, path: hotDocsCloud},
			wantStatus: 405, wantHeader: map[string]string{"Allow": "POST"}},

		// SmartDocumentor: 4-space JSON errors.
		{name: "smartdocumentor wrong secret", vendor: idSmartDocumentor, req: call{path: smartDocPath, contentType: formType, body: strings.Replace(smartDocExample, "Secret", "Guess", 1)},
			wantStatus: 400, wantBody: "{\n    \"error\": \"invalid_client\"\n}"},
		{name: "smartdocumentor unknown client", vendor: idSmartDocumentor, req: call{path: smartDocPath, contentType: formType, body: "grant_type=client_credentials&scope=WebAPI&client_id=x&client_secret=demo-secret"},
			wantStatus: 400, wantBody: "{\n    \"error\": \"invalid_client\"\n}"},
		{name: "smartdocumentor wrong grant", vendor: idSmartDocumentor, req: call{path: smartDocPath, contentType: formType, body: strings.Replace(smartDocExample, "client_credentials", "password", 1)},
			wantStatus: 400, wantBody: "{\n    \"error\": \"unsupported_grant_type\"\n}"},
		{name: "smartdocumentor wrong scope", vendor: idSmartDocumentor, req: call{path: smartDocPath, contentType: formType, body: strings.Replace(smartDocExample, "WebAPI", "webapi", 1)},
			wantStatus: 400, wantBody: "{\n    \"error\": \"invalid_scope\"\n}"},
		{name: "smartdocumentor missing scope", vendor: idSmartDocumentor, req: call{path: smartDocPath, contentType: formType, body: strings.Replace(smartDocExample, "scope=WebAPI&", "", 1)},
			wantStatus: 400, wantBody: "{\n    \"error\": \"invalid_request\"\n}"},
		{name: "smartdocumentor empty secret", vendor: idSmartDocumentor, req: call{path: smartDocPath, contentType: formType, body: "grant_type=client_credentials&scope=WebAPI&client_id=demo-client&client_secret="},
			wantStatus: 400, wantError: "invalid_request"},
		{name: "smartdocumentor duplicated scope", vendor: idSmartDocumentor, req: call{path: smartDocPath, contentType: formType, body: smartDocExample + "&scope=WebAPI"},
			wantStatus: 400, wantError: "invalid_request"},
		{name: "smartdocumentor unknown field", vendor: idSmartDocumentor, req: call{path: smartDocPath, contentType: formType, body: smartDocExample + "&audience=x"},
			wantStatus: 400, wantError: "invalid_request"},
		{name: "smartdocumentor json body", vendor: idSmartDocumentor, req: call{path: smartDocPath, contentType: jsonCT, body: `{"grant_type":"client_credentials","scope":"WebAPI","client_id":"demo-client","client_secret":"demo-secret"}`},
			wantStatus: 400, wantError: "invalid_request"},
		{name: "smartdocumentor no content type", vendor: idSmartDocumentor, req: call{path: smartDocPath, body: smartDocExample},
			wantStatus: 400, wantError: "invalid_request"},
		{name: "smartdocumentor basic auth", vendor: idSmartDocumentor, req: call{path: smartDocPath, contentType: formType, header: map[string]string{"Authorization": basic("demo-client", "demo-secret")}, body: "grant_type=client_credentials&scope=WebAPI"},
			wantStatus: 400, wantError: "invalid_request"},
		{name: "smartdocumentor credentials in query", vendor: idSmartDocumentor, req: call{path: smartDocPath + "?" + smartDocExample, contentType: formType, body: smartDocExample},
			wantStatus: 400, wantError: "invalid_request"},
		{name: "smartdocumentor GET", vendor: idSmartDocumentor, req: call{method: http.MethodGet, path: smartDocPath},
			wantStatus: 405, wantError: "invalid_request", wantHeader: map[string]string{"Allow": "POST"}},
		{name: "smartdocumentor body over 1 MiB", vendor: idSmartDocumentor, req: call{path: smartDocPath, contentType: formType, body: smartDocExample + "&x=" + strings.Repeat("a", 1<<20)},
			wantStatus: 413, wantError: "invalid_request"},

		// ABBYY Vantage: RFC 6749 errors.
		{name: "abbyy wrong secret", vendor: idAbbyy, req: call{path: abbyyPath, contentType: formType, body: strings.Replace(abbyyPassword, "client_secret=demo-secret", "client_secret=x", 1)},
			wantStatus: 401, wantError: "invalid_client"},
		{name: "abbyy wrong password", vendor: idAbbyy, req: call{path: abbyyPath, contentType: formType, body: strings.Replace(abbyyPassword, "password=demo-password", "password=x", 1)},
			wantStatus: 400, wantError: "invalid_grant"},
		{name: "abbyy wrong scope", vendor: idAbbyy, req: call{path: abbyyPath, contentType: formType, body: strings.Replace(abbyyPassword, "+global.wildcard", "", 1)},
			wantStatus: 400, wantError: "invalid_scope"},
		{name: "abbyy unknown grant", vendor: idAbbyy, req: call{path: abbyyPath, contentType: formType, body: strings.Replace(abbyyPassword, "grant_type=password", "grant_type=authorization_code", 1)},
			wantStatus: 400, wantError: "unsupported_grant_type"},
		{name: "abbyy password grant without username", vendor: idAbbyy, req: call{path: abbyyPath, contentType: formType, body: strings.Replace(abbyyPassword, "username=demo%40example.com&", "", 1)},
			wantStatus: 400, wantError: "invalid_request"},
		{name: "abbyy client credentials with username", vendor: idAbbyy, req: call{path: abbyyPath, contentType: formType, body: strings.Replace(abbyyPassword, "grant_type=password", "grant_type=client_credentials", 1)},
			wantStatus: 400, wantError: "invalid_request"},
		{name: "abbyy duplicated password", vendor: idAbbyy, req: call{path: abbyyPath, contentType: formType, body: abbyyPassword + "&password=demo-password"},
			wantStatus: 400, wantError: "invalid_request"},
		{name: "abbyy text/plain body", vendor: idAbbyy, req: call{path: abbyyPath, contentType: "text/plain", body: abbyyPassword},
			wantStatus: 400, wantError: "invalid_request"},
		{name: "abbyy unknown region", vendor: idAbbyy, req: call{path: "/abbyy_vantage/de/auth2/connect/token", contentType: formType, body: abbyyPassword},
			wantStatus: 404, wantError: "invalid_request"},
		{name: "abbyy account of another region", vendor: idAbbyy, req: call{path: "/abbyy_vantage/au/auth2/connect/token", contentType: formType, body: abbyyPassword},
			wantStatus: 401, wantError: "invalid_client"},
		{name: "abbyy account of another tenant", vendor: idAbbyy, req: call{path: "/abbyy_vantage/eu/auth2/tenant-2/connect/token", contentType: formType,
			body: "grant_type=client_credentials&client_id=tenant-client&client_secret=tenant-secret&scope=openid+permissions+global.wildcard"},
			wantStatus: 401, wantError: "invalid_client"},

		// Bright Pattern: RFC 6749 errors.
		{name: "brightpattern scope is not the host", vendor: idBrightPattern, req: call{path: brightPath, contentType: formType, body: strings.Replace(brightExample, "scope=example.com", "scope=example.org", 1)},
			wantStatus: 400, wantError: "invalid_scope"},
		{name: "brightpattern wrong secret", vendor: idBrightPattern, req: call{path: brightPath, contentType: formType, body: strings.Replace(brightExample, "qkDw", "xxxx", 1)},
			wantStatus: 401, wantError: "invalid_client"},
		{name: "brightpattern user of another host", vendor: idBrightPattern, req: call{path: "/brightpattern/demo.example.com/configapi/v2/oauth/token", contentType: formType, body: strings.Replace(brightExample, "scope=example.com", "scope=demo.example.com", 1)},
			wantStatus: 401, wantError: "invalid_client"},
		{name: "brightpattern wrong grant", vendor: idBrightPattern, req: call{path: brightPath, contentType: formType, body: strings.Replace(brightExample, "client_credentials", "password", 1)},
			wantStatus: 400, wantError: "unsupported_grant_type"},
		{name: "brightpattern missing scope", vendor: idBrightPattern, req: call{path: brightPath, contentType: formType, body: strings.Replace(brightExample, "&scope=example.com", "", 1)},
			wantStatus: 400, wantError: "invalid_request"},
		{name: "brightpattern duplicated client_id", vendor: idBrightPattern, req: call{path: brightPath, contentType: formType, body: brightExample + "&client_id=clientid"},
			wantStatus: 400, wantError: "invalid_request"},
		{name: "brightpattern json body", vendor: idBrightPattern, req: call{path: brightPath, contentType: jsonCT, body: `{}`},
			wantStatus: 400, wantError: "invalid_request"},

		// Saasu: {"error":...} or XML, in the request's format.
		{name: "saasu wrong password json", vendor: idSaasu, req: call{path: saasuToken, contentType: jsonCT, body: strings.Replace(saasuJSON, "StrongPassword", "weak", 1)},
			wantStatus: 400, wantBody: `{"error":"invalid_grant"}`},
		{name: "saasu wrong password xml", vendor: idSaasu, req: call{path: saasuToken, contentType: "text/xml", body: saasuXMLWith("StrongPassword", "weak")},
			wantStatus: 400, wantBody: "<OAuthError " + xmlNS + ">\n  <error>invalid_grant</error>\n</OAuthError>"},
		{name: "saasu unknown user", vendor: idSaasu, req: call{path: saasuToken, contentType: jsonCT, body: strings.Replace(saasuJSON, "test@host.com", "nobody@host.com", 1)},
			wantStatus: 400, wantBody: `{"error":"invalid_grant"}`},
		{name: "saasu wrong grant", vendor: idSaasu, req: call{path: saasuToken, contentType: jsonCT, body: strings.Replace(saasuJSON, `"password",`, `"client_credentials",`, 1)},
			wantStatus: 400, wantBody: `{"error":"unsupported_grant_type"}`},
		{name: "saasu wrong scope", vendor: idSaasu, req: call{path: saasuToken, contentType: jsonCT, body: strings.Replace(saasuJSON, `"full"`, `"fileid:1"`, 1)},
			wantStatus: 400, wantBody: `{"error":"invalid_scope"}`},
		{name: "saasu missing scope", vendor: idSaasu, req: call{path: saasuToken, contentType: "application/xml", body: saasuXMLWith("  <scope>full</scope>\n", "")},
			wantStatus: 400, wantError: "invalid_request"},
		{name: "saasu duplicated json member", vendor: idSaasu, req: call{path: saasuToken, contentType: jsonCT, body: strings.Replace(saasuJSON, "\n}", `,"scope":"full"}`, 1)},
			wantStatus: 400, wantBody: `{"error":"invalid_request"}`},
		{name: "saasu duplicated xml element", vendor: idSaasu, req: call{path: saasuToken, contentType: "application/xml", body: saasuXMLWith("<scope>full</scope>", "<scope>full</scope><scope>full</scope>")},
			wantStatus: 400, wantError: "invalid_request"},
		{name: "saasu xml wrong root", vendor: idSaasu, req: call{path: saasuToken, contentType: "application/xml", body: strings.ReplaceAll(saasuXML, "OAuthPasswordCredentialsGrantRequest", "Request")},
			wantStatus: 400, wantError: "invalid_request"},
		{name: "saasu xml unknown attribute", vendor: idSaasu, req: call{path: saasuToken, contentType: "application/xml", body: saasuXMLWith(xmlNS, `mode="x"`)},
			wantStatus: 400, wantError: "invalid_request"},
		{name: "saasu xml default namespace", vendor: idSaasu, req: call{path: saasuToken, contentType: "application/xml", body: saasuXMLWith(xmlNS, `xmlns="urn:x"`)},
			wantStatus: 400, wantError: "invalid_request"},
		{name: "saasu xml unknown element", vendor: idSaasu, req: call{path: saasuToken, contentType: "application/xml", body: saasuXMLWith("<scope>", "<client_id>x</client_id><scope>")},
			wantStatus: 400, wantError: "invalid_request"},
		{name: "saasu xml nested element", vendor: idSaasu, req: call{path: saasuToken, contentType: "application/xml", body: saasuXMLWith("<scope>full</scope>", "<scope><b>full</b></scope>")},
			wantStatus: 400, wantError: "invalid_request"},
		{name: "saasu form body", vendor: idSaasu, req: call{path: saasuToken, contentType: formType, body: "grant_type=password&username=test%40host.com&password=StrongPassword&scope=full"},
			wantStatus: 415, wantBody: `{"error":"invalid_request"}`},
		{name: "saasu unknown refresh token", vendor: idSaasu, req: call{path: saasuRefresh, contentType: formType, body: "grant_type=refresh_token&refresh_token=nope"},
			wantStatus: 400, wantBody: `{"error":"invalid_grant"}`},
		{name: "saasu refresh with password grant", vendor: idSaasu, req: call{path: saasuRefresh, contentType: jsonCT, body: saasuJSON},
			wantStatus: 400, wantError: "invalid_request"},

		// Generic RFC 6749.
		{name: "oauth2 basic and client_secret", vendor: idOAuth2, req: call{path: oauth2Path, contentType: formType, header: map[string]string{"Authorization": basic("demo-client", "demo-secret")}, body: "grant_type=client_credentials&client_secret=demo-secret"},
			wantStatus: 400, wantError: "invalid_request"},
		{name: "oauth2 basic without form-encoding", vendor: idOAuth2, req: call{path: oauth2Path, contentType: formType,
			header: map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("client%3A1:s3cr/t+&=%"))}, body: "grant_type=client_credentials"},
			wantStatus: 401, wantError: "invalid_client", wantHeader: map[string]string{"WWW-Authenticate": `Basic realm="vendorsim"`}},
		{name: "oauth2 wrong basic secret", vendor: idOAuth2, req: call{path: oauth2Path, contentType: formType, header: map[string]string{"Authorization": basic("demo-client", "x")}, body: "grant_type=client_credentials"},
			wantStatus: 401, wantError: "invalid_client", wantHeader: map[string]string{"WWW-Authenticate": `Basic realm="vendorsim"`}},
		{name: "oauth2 no client authentication", vendor: idOAuth2, req: call{path: oauth2Path, contentType: formType, body: "grant_type=client_credentials"},
			wantStatus: 401, wantError: "invalid_client"},
		{name: "oauth2 unknown grant", vendor: idOAuth2, req: call{path: oauth2Path, contentType: formType, body: "grant_type=authorization_code&client_id=demo-client&client_secret=demo-secret"},
			wantStatus: 400, wantError: "unsupported_grant_type"},
		{name: "oauth2 missing grant", vendor: idOAuth2, req: call{path: oauth2Path, contentType: formType, body: "client_id=demo-client&client_secret=demo-secret"},
			wantStatus: 400, wantError: "invalid_request"},
		{name: "oauth2 duplicated grant", vendor: idOAuth2, req: call{path: oauth2Path, contentType: formType, body: "grant_type=client_credentials&grant_type=client_credentials&client_id=demo-client&client_secret=demo-secret"},
			wantStatus: 400, wantError: "invalid_request"},
		{name: "oauth2 wrong password", vendor: idOAuth2, req: call{path: oauth2Path, contentType: jsonCT, body: `{"grant_type":"password","client_id":"demo-client","client_secret":"demo-secret","username":"demo-user","password":"x"}`},
			wantStatus: 400, wantError: "invalid_grant"},
		{name: "oauth2 password grant without password", vendor: idOAuth2, req: call{path: oauth2Path, contentType: formType, body: "grant_type=password&client_id=demo-client&client_secret=demo-secret&username=demo-user"},
			wantStatus: 400, wantError: "invalid_request"},
		{name: "oauth2 scope not allowed", vendor: idOAuth2, req: call{path: oauth2Path, contentType: formType, header: map[string]string{"Authorization": basic("client:1", "s3cr/t+&=%")}, body: "grant_type=client_credentials&scope=read+admin"},
			wantStatus: 400, wantError: "invalid_scope"},
		{name: "oauth2 unknown refresh token", vendor: idOAuth2, req: call{path: oauth2Path, contentType: formType, body: "grant_type=refresh_token&refresh_token=x&client_id=demo-client&client_secret=demo-secret"},
			wantStatus: 400, wantError: "invalid_grant"},
		{name: "oauth2 json member not a string", vendor: idOAuth2, req: call{path: oauth2Path, contentType: jsonCT, body: `{"grant_type":"client_credentials","client_id":"demo-client","client_secret":1}`},
			wantStatus: 400, wantError: "invalid_request"},
		{name: "oauth2 text/plain body", vendor: idOAuth2, req: call{path: oauth2Path, contentType: "text/plain", body: "grant_type=client_credentials&client_id=demo-client&client_secret=demo-secret"},
			wantStatus: 400, wantError: "invalid_request"},
		{name: "oauth2 latin-1 form", vendor: idOAuth2, req: call{path: oauth2Path, contentType: formType + "; charset=iso-8859-1", body: "grant_type=client_credentials&client_id=demo-client&client_secret=demo-secret"},
			wantStatus: 400, wantError: "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sim, srv := newTestServer(t)
			resp, body := tt.req.do(t, srv)
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status = %d, want %d (body %q)", resp.StatusCode, tt.wantStatus, body)
			}
			if tt.wantBody != "" && body != tt.wantBody {
				t.Errorf("body = %q, want %q", body, tt.wantBody)
			}
			if tt.wantError != "" {
				if got := errorCode(t, resp, body); got != tt.wantError {
					t.Errorf("error = %q, want %q", got, tt.wantError)
				}
			}
			for k, v := range tt.wantHeader {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			if sim.Requests(tt.vendor) != 1 || sim.Issued(tt.vendor) != 0 {
				t.Errorf("Requests, Issued = %d, %d; want 1, 0", sim.Requests(tt.vendor), sim.Issued(tt.vendor))
			}
		})
	}
}

// errorCode returns the "error" of a JSON or XML error answer.
func errorCode(t *testing.T, resp *http.Response, body string) string {
	t.Helper()
	ct := resp.Header.Get("Content-Type")
	switch {
	case strings.Contains(ct, "json"):
		var e struct{ Error string }
		if err := json.Unmarshal([]byte(body), &e); err != nil {
			t.Fatalf("error body %q: %v", body, err)
		}
		return e.Error
	case strings.Contains(ct, "xml"):
		_, rest, _ := strings.Cut(body, "<error>")
		code, _, _ := strings.Cut(rest, "</error>")
		return code
	}
	t.Fatalf("error answer of Content-Type %q: %q", ct, body)
	return ""
}
