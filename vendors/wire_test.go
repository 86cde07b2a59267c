package vendors

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/secret"
)

// recorded is one request a strictHandler received.
type recorded struct {
	method, path string
	header       http.Header
	body         string
	at           time.Time
}

// strictHandler records every request and answers with the next canned
// answer (the last one repeats).
type strictHandler struct {
	mu       sync.Mutex
	requests []recorded
	answers  []cannedAnswer
}

type cannedAnswer struct {
	status int
	ctype  string
	body   string
	header http.Header
	delay  time.Duration
}

func (h *strictHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	h.requests = append(h.requests, recorded{r.Method, r.URL.RequestURI(), r.Header.Clone(), string(body), time.Now()})
	a := h.answers[min(len(h.requests), len(h.answers))-1]
	h.mu.Unlock()
	if a.delay > 0 {
		time.Sleep(a.delay)
	}
	for k, v := range a.header {
		w.Header()[k] = v
	}
	if a.ctype != "" {
		w.Header().Set("Content-Type", a.ctype)
	}
	w.WriteHeader(a.status)
	_, _ = io.WriteString(w, a.body)
}

func (h *strictHandler) seen() []recorded {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]recorded(nil), h.requests...)
}

func serve(t *testing.T, answers ...cannedAnswer) (*strictHandler, string) {
	t.Helper()
	h := &strictHandler{answers: answers}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return h, srv.URL
}

func strategyFor(t *testing.T, vendor string) Strategy {
	t.Helper()
	st, ok := Default().Lookup(vendor)
	if !ok {
		t.Fatalf("no vendor %s", vendor)
	}
	return st
}

// withBase replaces {base} in every setting.
func withBase(set Settings, base string) Settings {
	out := Settings{}
	for k, v := range set {
		out[k] = strings.ReplaceAll(v, "{base}", base)
	}
	return out
}

// The documents' literal answers.
const (
	smartDocumentorAnswer = `{
    "access_token": "your access token",
    "expires_in": 3600,
    "token_type": "Bearer",
    "scope": "WebAPI"
}`
	smartDocumentorError = `{
    "error": "invalid_client"
}`
	brightPatternAnswer = `{
"access_token":"eyJhbGciOiJSUzI1NiI5q9Jgt...6HznsvPWy7UP3MINA",
"token_type":"Bearer",
"expires_in":"3599",
}`
	saasuJSONAnswer = `{
  "access_token": "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.DItMjAxNSAwNTowNjoyOS43NDE0NzYiLCJyb2xlIjoiYWNjZXNzIn0",
  "token_type": "Bearer",
  "expires_in": 10800,
  "refresh_token": "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJpc3MioIn0.4fEXVBxeFQB3YkfSQ-W1Wp5XiZJv2jsivcYR2fP73PQ",
  "scope": "full fileid:15431 fileid:14078 fileid:2045"
}`
	saasuXMLAnswer = `<OAuthAccessTokenGrant xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <access_token>eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.DItMjAxNSAwNTowNjoyOS43NDE0NzYiLCJyb2xlIjoiYWNjZXNzIn0</access_token>
  <token_type>Bearer</token_type>
  <expires_in>10800</expires_in>
  <refresh_token>eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJpc3MioIn0.4fEXVBxeFQB3YkfSQ-W1Wp5XiZJv2jsivcYR2fP73PQ</refresh_token>
  <scope>full fileid:15431 fileid:14078 fileid:2045</scope>
</OAuthAccessTokenGrant>`
	saasuAccessToken  = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.DItMjAxNSAwNTowNjoyOS43NDE0NzYiLCJyb2xlIjoiYWNjZXNzIn0"
	saasuRefreshToken = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJpc3MioIn0.4fEXVBxeFQB3YkfSQ-W1Wp5XiZJv2jsivcYR2fP73PQ"
	saasuScope        = "full fileid:15431 fileid:14078 fileid:2045"
	// ABBYY's documentation page shows no literal answer; this is the
	// layout of ABBYY's published sample (IdentityServer).
	abbyyAnswer = `{
  "access_token": "abbyy-token",
  "expires_in": 2592000,
  "token_type": "Bearer",
  "scope": "openid permissions global.wildcard"
}`
)

// TestDocumentedRequests: each vendor's request is the document's, byte for
// byte where the document shows one, and the document's answer parses.
func TestDocumentedRequests(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		vendor   string
		settings Settings // {base} is the test server
		creds    map[string]string
		params   map[string]string
		refresh  string // refresh token passed to Fetch
		answer   cannedAnswer
		// the request
		wantPath, wantType, wantAccept, wantBody string
		// the token
		wantToken, wantScope, wantRefresh string
		wantLife                          time.Duration
		wantSource                        string
	}{
		{
			name: "hotdocs_advance service principal log-in", vendor: "hotdocs_advance",
			settings: Settings{"token_url": "{base}/{tenancy}/auth/Authorize/ServicePrincipalLogIn"},
			creds:    map[string]string{"client_name": "yourTenancy17ABSHVJL", "principal_name": "ExamplePrincipal01", "principal_password": "examplepassword"},
			params:   map[string]string{"tenancy": "yourtenancy"},
			answer:   cannedAnswer{status: 200, ctype: "text/plain", body: "opaque-token-string"},
			wantPath: "/yourtenancy/auth/Authorize/ServicePrincipalLogIn", wantType: "application/json", wantAccept: "text/plain",
			wantBody:  "{\n  \"ClientName\": \"yourTenancy17ABSHVJL\",\n  \"PrincipalName\": \"ExamplePrincipal01\",\n  \"PrincipalPassword\": \"examplepassword\"\n}",
			wantToken: "opaque-token-string", wantLife: time.Hour, wantSource: "default_ttl",
		},
		{
			name: "hotdocs_advance on-premise, default_ttl from settings", vendor: "hotdocs_advance",
			settings: Settings{"token_url": "{base}/{tenancy}/HdaAuth/Authorize/ServicePrincipalLogIn", "default_ttl": "30m"},
			creds:    map[string]string{"client_name": "ab3e4544-b595-4681-b0ea-c7c18c9b63f6", "principal_name": "ExampleServicePrincipalA", "principal_password": "examplePassword"},
			params:   map[string]string{"tenancy": "yourtenancy"},
			answer:   cannedAnswer{status: 200, ctype: "text/plain; charset=utf-8", body: "opaque-token-string\r\n"},
			wantPath: "/yourtenancy/HdaAuth/Authorize/ServicePrincipalLogIn", wantType: "application/json", wantAccept: "text/plain",
			wantBody:  "{\n  \"ClientName\": \"ab3e4544-b595-4681-b0ea-c7c18c9b63f6\",\n  \"PrincipalName\": \"ExampleServicePrincipalA\",\n  \"PrincipalPassword\": \"examplePassword\"\n}",
			wantToken: "opaque-token-string", wantLife: 30 * time.Minute, wantSource: "default_ttl",
		},
		{
			name: "smartdocumentor client credentials", vendor: "smartdocumentor",
			settings: Settings{"token_url": "{base}/connect/token"},
			creds:    map[string]string{"client_id": "your-client-id", "client_secret": "your-client-secret"},
			answer:   cannedAnswer{status: 200, ctype: "application/json", body: smartDocumentorAnswer},
			wantPath: "/connect/token", wantType: "application/x-www-form-urlencoded", wantAccept: "application/json",
			wantBody:  "grant_type=client_credentials&scope=WebAPI&client_id=your-client-id&client_secret=your-client-secret",
			wantToken: "your access token", wantScope: "WebAPI", wantLife: time.Hour, wantSource: "expires_in",
		},
		{
			name: "abbyy_vantage password grant", vendor: "abbyy_vantage",
			settings: Settings{"token_url": "{base}/{region}/auth2/connect/token"},
			creds:    map[string]string{"client_id": "client_id", "client_secret": "client_secret", "username": "e-mail@example.com", "password": "pass word&"},
			params:   map[string]string{"region": "eu"},
			answer:   cannedAnswer{status: 200, ctype: "application/json; charset=UTF-8", body: abbyyAnswer},
			wantPath: "/eu/auth2/connect/token", wantType: "application/x-www-form-urlencoded", wantAccept: "application/json",
			wantBody:  "grant_type=password&scope=openid+permissions+global.wildcard&username=e-mail%40example.com&password=pass+word%26&client_id=client_id&client_secret=client_secret",
			wantToken: "abbyy-token", wantScope: "openid permissions global.wildcard", wantLife: 30 * 24 * time.Hour, wantSource: "expires_in",
		},
		{
			name: "abbyy_vantage client credentials on a tenant", vendor: "abbyy_vantage",
			settings: Settings{"grant_type": "client_credentials", "tenant_token_url": "{base}/{region}/auth2/{tenant_id}/connect/token"},
			creds:    map[string]string{"client_id": "client_id", "client_secret": "client_secret"},
			params:   map[string]string{"region": "au", "tenant_id": "3fa85f64-5717-4562-b3fc-2c963f66afa6"},
			answer:   cannedAnswer{status: 200, ctype: "application/json", body: abbyyAnswer},
			wantPath: "/au/auth2/3fa85f64-5717-4562-b3fc-2c963f66afa6/connect/token", wantType: "application/x-www-form-urlencoded", wantAccept: "application/json",
			wantBody:  "grant_type=client_credentials&scope=openid+permissions+global.wildcard&client_id=client_id&client_secret=client_secret",
			wantToken: "abbyy-token", wantScope: "openid permissions global.wildcard", wantLife: 30 * 24 * time.Hour, wantSource: "expires_in",
		},
		{
			name: "brightpattern, the document's example", vendor: "brightpattern",
			settings: Settings{"host": "example.com", "token_url": "{base}/configapi/v2/oauth/token"},
			creds:    map[string]string{"client_id": "clientid", "client_secret": "qkDwDJlDfig2IpeuUZYKH1Wb8q1V0ju6sILxQQqhJ"},
			answer:   cannedAnswer{status: 200, ctype: "application/json", body: brightPatternAnswer},
			wantPath: "/configapi/v2/oauth/token", wantType: "application/x-www-form-urlencoded", wantAccept: "application/json",
			wantBody:  docBrightPatternRequest,
			wantToken: "eyJhbGciOiJSUzI1NiI5q9Jgt...6HznsvPWy7UP3MINA", wantLife: 3599 * time.Second, wantSource: "expires_in",
		},
		{
			name: "saasu JSON, the document's samples", vendor: "saasu",
			settings: Settings{"token_url": "{base}/authorisation/token"},
			creds:    map[string]string{"username": "test@host.com", "password": "StrongPassword"},
			answer:   cannedAnswer{status: 200, ctype: "application/json; charset=utf-8", body: saasuJSONAnswer},
			wantPath: "/authorisation/token", wantType: "application/json", wantAccept: "application/json",
			wantBody:  docSaasuJSONRequest,
			wantToken: saasuAccessToken, wantScope: saasuScope, wantRefresh: saasuRefreshToken, wantLife: 10800 * time.Second, wantSource: "expires_in",
		},
		{
			name: "saasu XML, the document's samples", vendor: "saasu",
			settings: Settings{"token_url": "{base}/authorisation/token", "body_format": "xml"},
			creds:    map[string]string{"username": "test@host.com", "password": "StrongPassword"},
			answer:   cannedAnswer{status: 200, ctype: "application/xml; charset=utf-8", body: saasuXMLAnswer},
			wantPath: "/authorisation/token", wantType: "application/xml", wantAccept: "application/xml",
			wantBody:  docSaasuXMLRequest,
			wantToken: saasuAccessToken, wantScope: saasuScope, wantRefresh: saasuRefreshToken, wantLife: 10800 * time.Second, wantSource: "expires_in",
		},
		{
			name: "saasu XML escapes values", vendor: "saasu",
			settings: Settings{"token_url": "{base}/authorisation/token", "body_format": "xml"},
			creds:    map[string]string{"username": "a<b>@host.com", "password": `p&"w'`},
			answer:   cannedAnswer{status: 200, ctype: "text/xml", body: saasuXMLAnswer},
			wantPath: "/authorisation/token", wantType: "application/xml", wantAccept: "application/xml",
			wantBody: `<OAuthPasswordCredentialsGrantRequest xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <grant_type>password</grant_type>
  <username>a&lt;b&gt;@host.com</username>
  <password>p&amp;&#34;w&#39;</password>
  <scope>full</scope>
</OAuthPasswordCredentialsGrantRequest>`,
			wantToken: saasuAccessToken, wantScope: saasuScope, wantRefresh: saasuRefreshToken, wantLife: 10800 * time.Second, wantSource: "expires_in",
		},
		{
			name: "saasu JSON refresh", vendor: "saasu",
			settings: Settings{"token_url": "{base}/authorisation/token", "refresh_url": "{base}/authorisation/refresh"},
			creds:    map[string]string{"username": "test@host.com", "password": "StrongPassword"},
			refresh:  "old-refresh-token",
			answer:   cannedAnswer{status: 200, ctype: "application/json", body: saasuJSONAnswer},
			wantPath: "/authorisation/refresh", wantType: "application/json", wantAccept: "application/json",
			wantBody:  "{\n  \"grant_type\": \"refresh_token\",\n  \"refresh_token\": \"old-refresh-token\"\n}",
			wantToken: saasuAccessToken, wantScope: saasuScope, wantRefresh: saasuRefreshToken, wantLife: 10800 * time.Second, wantSource: "expires_in",
		},
		{
			name: "saasu XML refresh", vendor: "saasu",
			settings: Settings{"token_url": "{base}/authorisation/token", "refresh_url": "{base}/authorisation/refresh", "body_format": "xml"},
			creds:    map[string]string{"username": "test@host.com", "password": "StrongPassword"},
			refresh:  "old-refresh-token",
			answer:   cannedAnswer{status: 200, ctype: "application/xml", body: saasuXMLAnswer},
			wantPath: "/authorisation/refresh", wantType: "application/xml", wantAccept: "application/xml",
			wantBody: `<OAuthRefreshTokenGrantRequest xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <grant_type>refresh_token</grant_type>
  <refresh_token>old-refresh-token</refresh_token>
</OAuthRefreshTokenGrantRequest>`,
			wantToken: saasuAccessToken, wantScope: saasuScope, wantRefresh: saasuRefreshToken, wantLife: 10800 * time.Second, wantSource: "expires_in",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h, base := serve(t, tc.answer)
			call, err := strategyFor(t, tc.vendor).ResolveCall(Input{
				Settings:    withBase(tc.settings, base),
				Credentials: secret.FromStrings(tc.creds),
				Params:      tc.params,
			})
			if err != nil {
				t.Fatalf("ResolveCall: %v", err)
			}
			tok, err := call.Fetch(context.Background(), tc.refresh)
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			reqs := h.seen()
			if len(reqs) != 1 {
				t.Fatalf("%d requests, want 1", len(reqs))
			}
			r := reqs[0]
			if r.method != http.MethodPost || r.path != tc.wantPath {
				t.Errorf("request %s %s, want POST %s", r.method, r.path, tc.wantPath)
			}
			if got := r.header.Get("Content-Type"); got != tc.wantType {
				t.Errorf("Content-Type %q, want %q", got, tc.wantType)
			}
			if got := r.header.Get("Accept"); got != tc.wantAccept {
				t.Errorf("Accept %q, want %q", got, tc.wantAccept)
			}
			if got := r.header.Get("Authorization"); got != "" {
				t.Errorf("Authorization %q: these vendors authenticate in the body", got)
			}
			if r.body != tc.wantBody {
				t.Errorf("body\n%s\nwant\n%s", r.body, tc.wantBody)
			}
			if tc.wantType == "application/json" {
				var members map[string]any
				if err := json.Unmarshal([]byte(r.body), &members); err != nil {
					t.Errorf("body is not JSON: %v", err)
				}
			}
			if tok.AccessToken != tc.wantToken || tok.TokenType != "Bearer" || tok.Scope != tc.wantScope || tok.RefreshToken != tc.wantRefresh {
				t.Errorf("token %+v", tok)
			}
			if life := tok.ExpiresAt.Sub(tok.IssuedAt); life != tc.wantLife || tok.ExpirySource != tc.wantSource {
				t.Errorf("lifetime %v from %s, want %v from %s", life, tok.ExpirySource, tc.wantLife, tc.wantSource)
			}
			if !strings.HasPrefix(call.Target(), base) {
				t.Errorf("Target() = %q", call.Target())
			}
		})
	}
}

// TestDocumentedErrors: the documents' error answers, and the vendors'
// undocumented ones, map to the right Kind.
func TestDocumentedErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		vendor    string
		settings  Settings
		creds     map[string]string
		params    map[string]string
		answer    cannedAnswer
		wantKind  Kind
		wantOAuth string
		wantDesc  string
	}{
		{name: "smartdocumentor invalid_client (documented)", vendor: "smartdocumentor",
			settings: Settings{"token_url": "{base}/connect/token"}, creds: map[string]string{"client_id": "a", "client_secret": "b"},
			answer: cannedAnswer{status: 400, ctype: "application/json", body: smartDocumentorError}, wantKind: KindRejected, wantOAuth: "invalid_client"},
		{name: "hotdocs 401 plain text", vendor: "hotdocs_advance",
			settings: Settings{"token_url": "{base}/{tenancy}/auth/Authorize/ServicePrincipalLogIn"},
			creds:    map[string]string{"client_name": "c", "principal_name": "p", "principal_password": "hunter2"}, params: map[string]string{"tenancy": "t"},
			answer: cannedAnswer{status: 401, ctype: "text/plain; charset=utf-8", body: "Invalid client name, principal name or password."}, wantKind: KindRejected,
			wantDesc: "Invalid client name, principal name or password."},
		{name: "hotdocs 200 that is not a bare token", vendor: "hotdocs_advance",
			settings: Settings{"token_url": "{base}/{tenancy}/auth/Authorize/ServicePrincipalLogIn"},
			creds:    map[string]string{"client_name": "c", "principal_name": "p", "principal_password": "hunter2"}, params: map[string]string{"tenancy": "t"},
			answer: cannedAnswer{status: 200, ctype: "text/html", body: "<html><body>Sign in</body></html>"}, wantKind: KindBadResponse},
		{name: "abbyy invalid_grant", vendor: "abbyy_vantage",
			settings: Settings{"token_url": "{base}/{region}/auth2/connect/token"}, params: map[string]string{"region": "us"},
			creds:  map[string]string{"client_id": "a", "client_secret": "b", "username": "u", "password": "hunter2"},
			answer: cannedAnswer{status: 400, ctype: "application/json", body: `{"error":"invalid_grant","error_description":"invalid_username_or_password"}`}, wantKind: KindRejected, wantOAuth: "invalid_grant",
			wantDesc: "invalid_username_or_password"},
		{name: "brightpattern 401 without a body", vendor: "brightpattern",
			settings: Settings{"host": "example.com", "token_url": "{base}/configapi/v2/oauth/token"}, creds: map[string]string{"client_id": "a", "client_secret": "b"},
			answer: cannedAnswer{status: 401}, wantKind: KindRejected},
		{name: "saasu XML invalid_grant", vendor: "saasu",
			settings: Settings{"token_url": "{base}/authorisation/token", "body_format": "xml"}, creds: map[string]string{"username": "u", "password": "hunter2"},
			answer: cannedAnswer{status: 400, ctype: "application/xml", body: "<OAuthError xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\">\n  <error>invalid_grant</error>\n</OAuthError>"}, wantKind: KindRejected, wantOAuth: "invalid_grant"},
		{name: "saasu JSON unsupported_grant_type", vendor: "saasu",
			settings: Settings{"token_url": "{base}/authorisation/token"}, creds: map[string]string{"username": "u", "password": "hunter2"},
			answer: cannedAnswer{status: 400, ctype: "application/json", body: `{"error":"unsupported_grant_type"}`}, wantKind: KindBadRequest, wantOAuth: "unsupported_grant_type"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h, base := serve(t, tc.answer)
			call, err := strategyFor(t, tc.vendor).ResolveCall(Input{Settings: withBase(tc.settings, base), Credentials: secret.FromStrings(tc.creds), Params: tc.params})
			if err != nil {
				t.Fatalf("ResolveCall: %v", err)
			}
			_, err = call.Fetch(context.Background(), "")
			var ve *Error
			if !errors.As(err, &ve) || ve.Kind != tc.wantKind || ve.OAuthError != tc.wantOAuth || ve.Description != tc.wantDesc || ve.Vendor != tc.vendor {
				t.Fatalf("err = %#v, want kind %v, oauth %q, description %q", ve, tc.wantKind, tc.wantOAuth, tc.wantDesc)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("error leaks the password: %v", err)
			}
			if n := len(h.seen()); n != 1 {
				t.Fatalf("%d requests, want 1 (no retry)", n)
			}
		})
	}
}

// TestDefaultTargets: with no token_url setting, each vendor resolves the
// URL its document names.
func TestDefaultTargets(t *testing.T) {
	t.Parallel()
	tests := []struct {
		vendor   string
		settings Settings
		creds    map[string]string
		params   map[string]string
		want     string
	}{
		{"hotdocs_advance", nil, map[string]string{"client_name": "c", "principal_name": "p", "principal_password": "pw"}, map[string]string{"tenancy": "acme"},
			"https://acme.hotdocsadvance.com/auth/Authorize/ServicePrincipalLogIn"},
		{"hotdocs_advance", Settings{"domain": "docs.example.org", "token_url": "https://{tenancy}.{domain}/HdaAuth/Authorize/ServicePrincipalLogIn"},
			map[string]string{"client_name": "c", "principal_name": "p", "principal_password": "pw"}, map[string]string{"tenancy": "acme"},
			"https://acme.docs.example.org/HdaAuth/Authorize/ServicePrincipalLogIn"},
		{"smartdocumentor", nil, map[string]string{"client_id": "a", "client_secret": "b"}, nil, "https://cloud.smartdocumentor.net/connect/token"},
		{"abbyy_vantage", nil, map[string]string{"client_id": "a", "client_secret": "b", "username": "u", "password": "p"}, map[string]string{"region": "us"},
			"https://vantage-us.abbyy.com/auth2/connect/token"},
		{"abbyy_vantage", nil, map[string]string{"client_id": "a", "client_secret": "b", "username": "u", "password": "p"}, map[string]string{"region": "eu", "tenant_id": "t-1"},
			"https://vantage-eu.abbyy.com/auth2/t-1/connect/token"},
		{"brightpattern", Settings{"host": "acme.brightpattern.com"}, map[string]string{"client_id": "a", "client_secret": "b"}, nil,
			"https://acme.brightpattern.com/configapi/v2/oauth/token"},
		{"brightpattern", Settings{"host": "bp.example.com:8443"}, map[string]string{"client_id": "a", "client_secret": "b"}, nil,
			"https://bp.example.com:8443/configapi/v2/oauth/token"},
		{"saasu", nil, map[string]string{"username": "u", "password": "p"}, nil, "https://api.saasu.com/authorisation/token"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			t.Parallel()
			call, err := strategyFor(t, tc.vendor).ResolveCall(Input{Settings: tc.settings, Credentials: secret.FromStrings(tc.creds), Params: tc.params})
			if err != nil {
				t.Fatalf("ResolveCall: %v", err)
			}
			if got := call.Target(); got != tc.want {
				t.Fatalf("Target() = %q, want %q", got, tc.want)
			}
		})
	}
	call, err := strategyFor(t, "saasu").ResolveCall(Input{Credentials: secret.FromStrings(map[string]string{"username": "u", "password": "p"})})
	if err != nil {
		t.Fatal(err)
	}
	if got := call.(*oauthCall).refreshURL; got != "https://api.saasu.com/authorisation/refresh" {
		t.Fatalf("Saasu refresh URL %q", got)
	}
}

// TestResolveCallRejectsDeviations: requests a vendor would refuse are refused
// here first, naming the input to fix, and nothing is sent.
func TestResolveCallRejectsDeviations(t *testing.T) {
	t.Parallel()
	hotdocs := map[string]string{"client_name": "c", "principal_name": "p", "principal_password": "pw"}
	abbyy := map[string]string{"client_id": "a", "client_secret": "b", "username": "u", "password": "p"}
	pair := map[string]string{"client_id": "a", "client_secret": "b"}
	saasu := map[string]string{"username": "u", "password": "p"}
	tests := []struct {
		name     string
		vendor   string
		settings Settings
		creds    map[string]string
		params   map[string]string
		field    string // "params.x"/"credentials.x" for ArgumentError, "setting x" for ConfigError
	}{
		{"hotdocs missing password", "hotdocs_advance", nil, map[string]string{"client_name": "c", "principal_name": "p"}, map[string]string{"tenancy": "t"}, "credentials.principal_password"},
		{"hotdocs OAuth credential names", "hotdocs_advance", nil, map[string]string{"client_id": "c", "client_secret": "s"}, map[string]string{"tenancy": "t"}, "credentials.client_id"},
		{"hotdocs missing tenancy", "hotdocs_advance", nil, hotdocs, nil, "params.tenancy"},
		{"hotdocs unknown param", "hotdocs_advance", nil, hotdocs, map[string]string{"tenancy": "t", "region": "eu"}, "params.region"},
		{"hotdocs tenancy unused by a fixed token_url", "hotdocs_advance", Settings{"token_url": "https://docs.example.org/HdaAuth/Authorize/ServicePrincipalLogIn"}, hotdocs, map[string]string{"tenancy": "t"}, "params.tenancy"},
		{"hotdocs domain with a path", "hotdocs_advance", Settings{"domain": "evil.com/x"}, hotdocs, map[string]string{"tenancy": "t"}, "setting domain"},
		{"hotdocs empty domain", "hotdocs_advance", Settings{"domain": ""}, hotdocs, map[string]string{"tenancy": "t"}, "setting token_url"},
		{"hotdocs http to a public host", "hotdocs_advance", Settings{"token_url": "http://{tenancy}.{domain}/auth/Authorize/ServicePrincipalLogIn"}, hotdocs, map[string]string{"tenancy": "t"}, "setting token_url"},
		{"hotdocs unknown setting", "hotdocs_advance", Settings{"scope": "x"}, hotdocs, map[string]string{"tenancy": "t"}, "setting scope"},
		{"abbyy region outside the set", "abbyy_vantage", nil, abbyy, map[string]string{"region": "de"}, "params.region"},
		{"abbyy missing region", "abbyy_vantage", nil, abbyy, nil, "params.region"},
		{"abbyy password grant without password", "abbyy_vantage", nil, map[string]string{"client_id": "a", "client_secret": "b", "username": "u"}, map[string]string{"region": "eu"}, "credentials.password"},
		{"abbyy username with client_credentials", "abbyy_vantage", Settings{"grant_type": "client_credentials"}, abbyy, map[string]string{"region": "eu"}, "credentials.password"},
		{"abbyy missing client_secret", "abbyy_vantage", nil, map[string]string{"client_id": "a", "username": "u", "password": "p"}, map[string]string{"region": "eu"}, "credentials.client_secret"},
		{"abbyy unsupported grant", "abbyy_vantage", Settings{"grant_type": "authorization_code"}, abbyy, map[string]string{"region": "eu"}, "setting grant_type"},
		{"abbyy body format is fixed", "abbyy_vantage", Settings{"body_format": "json"}, abbyy, map[string]string{"region": "eu"}, "setting body_format"},
		{"abbyy scope is not a param", "abbyy_vantage", nil, abbyy, map[string]string{"region": "eu", "scope": "admin"}, "params.scope"},
		{"brightpattern without host", "brightpattern", nil, pair, nil, "setting host"},
		{"brightpattern host with a path", "brightpattern", Settings{"host": "evil.com/x"}, pair, nil, "setting host"},
		{"brightpattern host is not a param", "brightpattern", Settings{"host": "example.com"}, pair, map[string]string{"host": "evil.com"}, "params.host"},
		{"brightpattern client_auth is fixed", "brightpattern", Settings{"host": "example.com", "client_auth": "client_secret_basic"}, pair, nil, "setting client_auth"},
		{"saasu form body", "saasu", Settings{"body_format": "form"}, saasu, nil, "setting body_format"},
		{"saasu has no client", "saasu", nil, map[string]string{"username": "u", "password": "p", "client_id": "c"}, nil, "credentials.client_id"},
		{"saasu missing password", "saasu", nil, map[string]string{"username": "u"}, nil, "credentials.password"},
		{"saasu refresh_url over http", "saasu", Settings{"refresh_url": "http://api.saasu.com/authorisation/refresh"}, saasu, nil, "setting refresh_url"},
		{"smartdocumentor scope is not a param", "smartdocumentor", nil, pair, map[string]string{"scope": "admin"}, "params.scope"},
		{"oauth2 without token_url", "oauth2", nil, pair, nil, "setting token_url"},
		{"oauth2 unknown placeholder", "oauth2", Settings{"token_url": "https://{tenant}.example.com/token"}, pair, nil, "setting token_url"},
		{"oauth2 extra_params overriding the secret", "oauth2", Settings{"token_url": "https://idp.example/token", "extra_params.client_secret": "x"}, pair, nil, "setting extra_params.client_secret"},
		{"oauth2 username unused by client_credentials", "oauth2", Settings{"token_url": "https://idp.example/token"}, map[string]string{"client_id": "a", "client_secret": "b", "username": "u"}, nil, "credentials.username"},
		{"oauth2 private_key_jwt without key", "oauth2", Settings{"token_url": "https://idp.example/token", "client_auth": "private_key_jwt"}, map[string]string{"client_id": "a"}, nil, "credentials.private_key"},
		{"oauth2 private_key_jwt with a certificate", "oauth2", Settings{"token_url": "https://idp.example/token", "client_auth": "private_key_jwt"},
			map[string]string{"client_id": "a", "private_key": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}, nil, "credentials.private_key"},
		{"oauth2 private_key_jwt with a stray secret", "oauth2", Settings{"token_url": "https://idp.example/token", "client_auth": "private_key_jwt"},
			map[string]string{"client_id": "a", "client_secret": "b", "private_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}, nil, "credentials.client_secret"},
		{"oauth2 client_secret_jwt without secret", "oauth2", Settings{"token_url": "https://idp.example/token", "client_auth": "client_secret_jwt"}, map[string]string{"client_id": "a"}, nil, "credentials.client_secret"},
		{"oauth2 tls_client_auth without certificate", "oauth2", Settings{"token_url": "https://idp.example/token", "client_auth": "tls_client_auth"}, map[string]string{"client_id": "a"}, nil, "setting client_auth"},
		{"oauth2 unknown client_auth", "oauth2", Settings{"token_url": "https://idp.example/token", "client_auth": "magic"}, pair, nil, "setting client_auth"},
		{"oauth2 xml body", "oauth2", Settings{"token_url": "https://idp.example/token", "body_format": "xml"}, pair, nil, "setting body_format"},
		{"oauth2 default_ttl above a year", "oauth2", Settings{"token_url": "https://idp.example/token", "default_ttl": "9000h"}, pair, nil, "setting default_ttl"},
		{"oauth2 half a client certificate", "oauth2", Settings{"token_url": "https://idp.example/token", "tls_client_cert": "/x.pem"}, pair, nil, "setting tls_client_cert"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			call, err := strategyFor(t, tc.vendor).ResolveCall(Input{Settings: tc.settings, Credentials: secret.FromStrings(tc.creds), Params: tc.params})
			var ae *ArgumentError
			var ce *ConfigError
			switch {
			case errors.As(err, &ae):
				if ae.Field != tc.field {
					t.Fatalf("ArgumentError on %s (%v), want %s", ae.Field, err, tc.field)
				}
			case errors.As(err, &ce):
				if "setting "+ce.Setting != tc.field {
					t.Fatalf("ConfigError on %s (%v), want %s", ce.Setting, err, tc.field)
				}
			default:
				t.Fatalf("ResolveCall = %v, %v; want an error on %s", call, err, tc.field)
			}
		})
	}
}

// TestRefreshGrant: only vendors that document the refresh grant are sent
// one; a refusal of any definitive kind falls back to the primary grant.
func TestRefreshGrant(t *testing.T) {
	t.Parallel()
	ok := cannedAnswer{status: 200, ctype: "application/json", body: `{"access_token":"tok","expires_in":60,"refresh_token":"r2"}`}
	tests := []struct {
		name      string
		vendor    string
		settings  Settings
		creds     map[string]string
		answers   []cannedAnswer
		wantBody  []string // grant_type=... of each request, or the JSON body's grant_type
		wantError Kind
	}{
		{name: "smartdocumentor never refreshes", vendor: "smartdocumentor", settings: Settings{"token_url": "{base}/connect/token"},
			creds: map[string]string{"client_id": "a", "client_secret": "b"}, answers: []cannedAnswer{ok}, wantBody: []string{"client_credentials"}},
		{name: "oauth2 refreshes with the scope", vendor: "oauth2", settings: Settings{"token_url": "{base}/token", "scope": "api"},
			creds: map[string]string{"client_id": "a", "client_secret": "b"}, answers: []cannedAnswer{ok}, wantBody: []string{"refresh_token"}},
		{name: "oauth2 falls back after invalid_request", vendor: "oauth2", settings: Settings{"token_url": "{base}/token"},
			creds:   map[string]string{"client_id": "a", "client_secret": "b"},
			answers: []cannedAnswer{{status: 400, ctype: "application/json", body: `{"error":"invalid_request"}`}, ok}, wantBody: []string{"refresh_token", "client_credentials"}},
		{name: "saasu does not fall back during an outage", vendor: "saasu", settings: Settings{"token_url": "{base}/t", "refresh_url": "{base}/r", "timeout": "2s"},
			creds:   map[string]string{"username": "u", "password": "p"},
			answers: []cannedAnswer{{status: 502, ctype: "text/html", body: "<html>bad gateway</html>"}}, wantBody: []string{"refresh_token", "refresh_token", "refresh_token"}, wantError: KindUnavailable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h, base := serve(t, tc.answers...)
			call, err := strategyFor(t, tc.vendor).ResolveCall(Input{Settings: withBase(tc.settings, base), Credentials: secret.FromStrings(tc.creds)})
			if err != nil {
				t.Fatalf("ResolveCall: %v", err)
			}
			_, err = call.Fetch(context.Background(), "r1")
			var ve *Error
			if tc.wantError != 0 && (!errors.As(err, &ve) || ve.Kind != tc.wantError) || tc.wantError == 0 && err != nil {
				t.Fatalf("err = %v, want kind %v", err, tc.wantError)
			}
			var grants []string
			for _, r := range h.seen() {
				var grant string
				if strings.HasPrefix(r.body, "{") {
					var m map[string]string
					_ = json.Unmarshal([]byte(r.body), &m)
					grant = m["grant_type"]
				} else {
					form, _ := url.ParseQuery(r.body)
					grant = form.Get("grant_type")
					if grant == "refresh_token" && (form.Get("refresh_token") != "r1" || (tc.settings["scope"] != "" && form.Get("scope") != tc.settings["scope"])) {
						t.Errorf("refresh body %q", r.body)
					}
				}
				grants = append(grants, grant)
			}
			if strings.Join(grants, ",") != strings.Join(tc.wantBody, ",") {
				t.Fatalf("grants %v, want %v", grants, tc.wantBody)
			}
		})
	}
}
