package vendorsim

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

// Accounts holding the example values of the vendor documents, added to
// every test simulator next to DemoAccounts.
var documentAccounts = []struct {
	vendor string
	creds  map[string]string
}{
	{idHotDocs, map[string]string{"client_name": "yourTenancy17ABSHVJL", "principal_name": "ExamplePrincipal01", "principal_password": "examplepassword", "tenancy": "yourtenancy"}},
	{idSmartDocumentor, map[string]string{"client_id": "{your Client ID}", "client_secret": "{your Client Secret}"}},
	{idAbbyy, map[string]string{"client_id": "tenant-client", "client_secret": "tenant-secret", "username": "user@example.com", "password": "tenant-password", "tenant_id": "tenant-1"}},
	{idBrightPattern, map[string]string{"client_id": "clientid", "client_secret": "qkDwDJlDfig2IpeuUZYKH1Wb8q1V0ju6sILxQQqhJ", "host": "example.com"}},
	{idSaasu, map[string]string{"username": "test@host.com", "password": "StrongPassword"}},
	{idOAuth2, map[string]string{"client_id": "client:1", "client_secret": "s3cr/t+&=%", "scope": "read write"}},
}

// newTestServer returns a simulator with the demo and document accounts,
// served by an httptest.Server that the test closes.
func newTestServer(t *testing.T, opts ...Option) (*Sim, *httptest.Server) {
	t.Helper()
	sim := New(opts...)
	for vendor, creds := range DemoAccounts() {
		sim.AddAccount(vendor, creds)
	}
	for _, a := range documentAccounts {
		sim.AddAccount(a.vendor, a.creds)
	}
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	return sim, srv
}

// call is one HTTP request to the simulator.
type call struct {
	method      string // POST when empty
	path        string
	contentType string
	header      map[string]string
	body        string
}

func (c call) do(t *testing.T, srv *httptest.Server) (*http.Response, string) {
	t.Helper()
	method := c.method
	if method == "" {
		method = http.MethodPost
	}
	req, err := http.NewRequest(method, srv.URL+c.path, strings.NewReader(c.body))
	if err != nil {
		t.Fatal(err)
	}
	if c.contentType != "" {
		req.Header.Set("Content-Type", c.contentType)
	}
	for k, v := range c.header {
		req.Header.Set(k, v)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

// tokenRE matches an issued token: 43 base64url characters, or a JWT.
var tokenRE = regexp.MustCompile(`[A-Za-z0-9_-]{36,}(?:\.[A-Za-z0-9_-]{36,}){0,2}`)

// maskTokens replaces the first token of body with <token> and the second
// with <refresh>, and returns them.
func maskTokens(body string) (string, []string) {
	var tokens []string
	masked := tokenRE.ReplaceAllStringFunc(body, func(tok string) string {
		tokens = append(tokens, tok)
		if len(tokens) == 1 {
			return "<token>"
		}
		return "<refresh>"
	})
	return masked, tokens
}

const (
	formType = "application/x-www-form-urlencoded"
	jsonCT   = "application/json"
	xmlNS    = `xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"`
)
