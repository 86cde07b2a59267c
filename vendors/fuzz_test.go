package vendors

// Fuzz targets for every parser in this package that reads bytes a vendor
// (or a caller) controls. Each checks properties, not only the absence of
// panics. scripts/fuzz.sh runs them briefly in CI; `make fuzz-long` longer.
//
// The seeds include the example answers of the vendor documents
// (the pages each vendor strategy cites in its Info.DocumentationURL),
// copied here literally.

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// Example bodies, literally as the vendor documents print them (the
// documents' answers are in wire_test.go).
const (
	// 000 HotDocs Advance: "Content-type: text/plain / Body: [token string]".
	docHotDocsAnswer = "[token string]"
	// 004 Saasu: the request samples (a vendor may echo a request).
	docSaasuJSONRequest = `{
  "grant_type": "password",
  "username": "test@host.com",
  "password": "StrongPassword",
  "scope": "full"
}`
	docSaasuXMLRequest = `<OAuthPasswordCredentialsGrantRequest xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <grant_type>password</grant_type>
  <username>test@host.com</username>
  <password>StrongPassword</password>
  <scope>full</scope>
</OAuthPasswordCredentialsGrantRequest>`
	// 003 Bright Pattern: the documented request body.
	docBrightPatternRequest = `grant_type=client_credentials&client_id=clientid&client_secret=qkDwDJlDfig2IpeuUZYKH1Wb8q1V0ju6sILxQQqhJ&scope=example.com`
)

// fuzzSecret is a credential of the fuzzed request; nothing the vendor
// answers may bring it back to the caller. It has characters that every
// body encoding changes.
const fuzzSecret = `Fz&s3cr+t/"<ü>`

// jwtWithExp is a JWS compact token whose payload is payload.
func jwtWithPayload(payload string) string {
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(`{"alg":"none"}`)) + "." + enc.EncodeToString([]byte(payload)) + ".c2ln"
}

// FuzzInterpret feeds token endpoint answers (status, Content-Type, body)
// to the generic answer reader, as an RFC 6749 answer or as a bare token.
// Properties:
//   - exactly one of token and error;
//   - a token has a non-empty access_token and token_type, came with a 2xx
//     status, and expires after it was issued and at most MaxLifetime (or
//     the default TTL) later;
//   - an answer with an "error" member is an error whatever the status;
//   - an error is a *Error of a known kind, and no part of it carries the
//     request's secret, in any encoding the request used.
func FuzzInterpret(f *testing.F) {
	for _, seed := range []struct {
		status int
		ctype  string
		body   string
	}{
		{200, "text/plain", docHotDocsAnswer},
		{200, "text/plain; charset=utf-8", jwtWithPayload(`{"exp":4102444800}`)},
		{200, "application/json", smartDocumentorAnswer},
		{400, "application/json", smartDocumentorError},
		{200, "application/json", `{"error":"invalid_grant"}`},
		{200, "application/json; charset=utf-8", brightPatternAnswer},
		{200, "application/json", saasuJSONAnswer},
		{200, "application/xml", saasuXMLAnswer},
		{200, "text/xml", saasuXMLAnswer},
		{200, "", saasuXMLAnswer},
		{400, "application/json", docSaasuJSONRequest},
		{400, "application/xml", docSaasuXMLRequest},
		{200, "application/x-www-form-urlencoded", "access_token=abc&token_type=bearer&expires_in=60"},
		{200, "text/plain", "access_token=abc&expires_in=3600"},
		{400, "text/plain", "bad client_secret " + fuzzSecret},
		{401, "application/json", `{"error":"invalid_client","error_description":"secret ` + strings.ReplaceAll(fuzzSecret, `"`, `\"`) + ` is wrong"}`},
		{500, "text/plain", "echo: " + docBrightPatternRequest + "&client_secret=" + url.QueryEscape(fuzzSecret)},
		{429, "application/json", `{"error":"slow_down"}`},
		{200, "application/json", `{"access_token":"a","expires_in":null}`},
		{200, "application/json", `{"access_token":"a","expires_in":"1e400"}`},
		{200, "application/json", `{"access_token":"a","expires_in":-1,}`},
	} {
		f.Add(seed.status, seed.ctype, []byte(seed.body), false, true)
		f.Add(seed.status, seed.ctype, []byte(seed.body), true, false)
	}
	sent := time.Unix(1_800_000_000, 0)
	f.Fuzz(func(t *testing.T, status int, ctype string, body []byte, bare, withDefaultTTL bool) {
		if status < 100 || status > 999 || len(body) > MaxAnswerBytes {
			return
		}
		x := &exchange{vendor: "fuzz", secrets: encodings(fuzzSecret)}
		if bare {
			x.format = formatBareToken
		}
		if withDefaultTTL {
			x.defaultTTL = time.Hour
		}
		resp := &http.Response{StatusCode: status, Header: http.Header{"Content-Type": {ctype}, "Retry-After": {"3"}}}
		tok, err := x.interpret(resp, body, sent)
		if (tok == nil) == (err == nil) {
			t.Fatalf("token %v and error %v", tok, err)
		}
		if err != nil {
			ve, ok := err.(*Error)
			if !ok || ve.Kind < KindUnavailable || ve.Kind > KindBadResponse || ve.Vendor != "fuzz" {
				t.Fatalf("error %#v is not a classified *Error", err)
			}
			for _, shown := range []string{ve.Error(), ve.Description, ve.OAuthError, ve.URI} {
				for _, enc := range encodings(fuzzSecret) {
					if strings.Contains(shown, enc) {
						t.Fatalf("error %q carries the request's secret (as %q)", shown, enc)
					}
				}
			}
			return
		}
		if a, perr := parseAnswer(ctype, body); !bare && perr == nil && a.Error != "" {
			t.Fatalf("answer with error member %q became a token", a.Error)
		}
		if status/100 != 2 {
			t.Fatalf("HTTP %d became a token", status)
		}
		if tok.AccessToken == "" || tok.TokenType == "" {
			t.Fatalf("token %+v lacks access_token or token_type", tok)
		}
		life := tok.ExpiresAt.Sub(tok.IssuedAt)
		if !tok.IssuedAt.Equal(sent) || life <= 0 || life > MaxLifetime {
			t.Fatalf("token lifetime %v (issued %v, expires %v, source %s)", life, tok.IssuedAt, tok.ExpiresAt, tok.ExpirySource)
		}
		if life%time.Second != 0 && tok.ExpirySource != "jwt_exp" {
			t.Fatalf("lifetime %v is not whole seconds", life)
		}
		for _, w := range tok.Warnings {
			if strings.Contains(w, tok.AccessToken) && len(tok.AccessToken) > 8 {
				t.Fatalf("warning %q carries the token", w)
			}
		}
	})
}

// FuzzJWTExpiry reads the exp claim of arbitrary tokens. Properties: a
// found exp is positive and at most 1e11 (year 5138) and comes from a
// three-part token; and a token built with exp = n in that range gives
// back exactly n.
func FuzzJWTExpiry(f *testing.F) {
	f.Add("eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.DItMjAxNSAwNTowNjoyOS43NDE0NzYiLCJyb2xlIjoiYWNjZXNzIn0", int64(1))
	f.Add("eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJpc3MioIn0.4fEXVBxeFQB3YkfSQ-W1Wp5XiZJv2jsivcYR2fP73PQ", int64(4102444800))
	f.Add("eyJhbGciOiJSUzI1NiI5q9Jgt...6HznsvPWy7UP3MINA", int64(0))
	f.Add(jwtWithPayload(`{"exp":1700000000}`), int64(1700000000))
	f.Add(jwtWithPayload(`{"exp":1.7e9,"sub":"x"}`), int64(100000000000))
	f.Add(jwtWithPayload(`{"exp":"1700000000"}`), int64(-5))
	f.Add(jwtWithPayload(`{"exp":1e400}`), int64(1e11+1))
	f.Fuzz(func(t *testing.T, token string, n int64) {
		if exp, ok := JWTExpiry(token); ok {
			if u := exp.Unix(); u <= 0 || u > 1e11 {
				t.Fatalf("exp %d out of range", u)
			}
			if strings.Count(token, ".") != 2 {
				t.Fatalf("exp found in a token of %d parts", strings.Count(token, ".")+1)
			}
		}
		built := jwtWithPayload(fmt.Sprintf(`{"exp":%d}`, n))
		exp, ok := JWTExpiry(built)
		want := n > 0 && n <= 1e11
		if ok != want || (ok && exp.Unix() != n) {
			t.Fatalf("JWTExpiry(exp=%d) = %v, %v", n, exp.Unix(), ok)
		}
	})
}

// urlTemplates are the token URL templates the vendors ship or document,
// with their trusted settings.
var urlTemplates = []struct {
	tmpl     string
	settings Settings
}{
	{"https://{tenancy}.{domain}/auth/Authorize/ServicePrincipalLogIn", Settings{"domain": "hotdocsadvance.com"}},
	{"https://{tenancy}.{domain}/HdaAuth/Authorize/ServicePrincipalLogIn", Settings{"domain": "docs.example.org:8443"}},
	{"https://vantage-{region}.abbyy.com/auth2/{tenant_id}/connect/token", nil},
	{"https://{host}/configapi/v2/oauth/token", Settings{"host": "example.com"}},
	{"http://127.0.0.1:8099/hotdocs_advance/{tenancy}/auth/{tenant_id}/token", nil},
}

// FuzzResolveURL fills the templates with arbitrary param values.
// Properties of every URL it returns: it parses; https, or http on
// loopback; no user info, query or fragment; the host is the template's
// host with each host placeholder replaced by a value without a dot (so a
// param can never move the request to another domain); the path has the
// template's number of segments, none "." or "..".
func FuzzResolveURL(f *testing.F) {
	for i := range urlTemplates {
		f.Add(uint8(i), "acme", "eu")
		f.Add(uint8(i), "yourTenancy17ABSHVJL", "ab3e4544-b595-4681-b0ea-c7c18c9b63f6")
	}
	f.Add(uint8(0), "evil.com#", "x")
	f.Add(uint8(2), "eu", "..")
	f.Add(uint8(2), "eu.attacker.net/x?", "a/b")
	f.Add(uint8(4), "a%2e%2e", "%2F")
	f.Fuzz(func(t *testing.T, which uint8, a, b string) {
		tc := urlTemplates[int(which)%len(urlTemplates)]
		params := map[string]string{"tenancy": a, "region": a, "tenant_id": b}
		out, err := ResolveURL(tc.tmpl, tc.settings, params, nil)
		if err != nil {
			switch err.(type) {
			case *ArgumentError, *ConfigError:
			default:
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		u, perr := url.Parse(out)
		if perr != nil {
			t.Fatalf("result %q does not parse: %v", out, perr)
		}
		if u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
			t.Fatalf("result %q has user info, query or fragment", out)
		}
		if u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname())) {
			t.Fatalf("result %q is not https", out)
		}
		tmplHost, tmplPath := splitTemplate(tc.tmpl)
		wantHost := placeholder.ReplaceAllStringFunc(tmplHost, func(m string) string {
			name := m[1 : len(m)-1]
			if v := tc.settings[name]; v != "" {
				return v
			}
			if strings.Contains(params[name], ".") {
				t.Fatalf("param %s=%q with a dot landed in the host of %q", name, params[name], out)
			}
			return params[name]
		})
		if u.Host != wantHost {
			t.Fatalf("host %q, want %q (from %q)", u.Host, wantHost, tc.tmpl)
		}
		gotSegs, wantSegs := strings.Split(u.EscapedPath(), "/"), strings.Split(tmplPath, "/")
		if len(gotSegs) != len(wantSegs) {
			t.Fatalf("path %q has %d segments, template %q has %d", u.EscapedPath(), len(gotSegs), tmplPath, len(wantSegs))
		}
		for _, s := range gotSegs[1:] {
			if s == "." || s == ".." || s == "" {
				t.Fatalf("path %q has segment %q", u.EscapedPath(), s)
			}
		}
	})
}

// splitTemplate returns a template's host and path parts.
func splitTemplate(tmpl string) (host, path string) {
	rest := tmpl[strings.Index(tmpl, "://")+3:]
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		return rest[:i], rest[i:]
	}
	return rest, ""
}

// FuzzScrub checks the scrubber on its own. Property: for a secret of at
// least 3 bytes, the output never contains it, whatever surrounds it, and
// is at most maxDescription bytes plus the ellipsis.
//
// An echo that changed a secret's spaces into control characters ("x\nyz"
// for "x yz") must not come out as the secret either (scrub replaces
// before and after mapping control characters). Secrets that are not
// valid UTF-8 are left out: scrub writes invalid bytes as U+FFFD,
// whose encoding can complete a fragment such as "aa\xef"
// (testdata/fuzz/FuzzScrub/49c7486213ca5cd8). Secrets reach the broker as
// YAML or protobuf strings, valid UTF-8; a file: secret may not be, but a
// JSON echo of it has its invalid bytes replaced before scrub sees it.
func FuzzScrub(f *testing.F) {
	f.Add("invalid client secret qkDwDJlDfig2IpeuUZYKH1Wb8q1V0ju6sILxQQqhJ", "qkDwDJlDfig2IpeuUZYKH1Wb8q1V0ju6sILxQQqhJ")
	f.Add("password StrongPassword rejected", "StrongPassword")
	f.Add("aaaa", "aaa")
	f.Add("x\nyz", "x yz")
	f.Fuzz(func(t *testing.T, s, secret string) {
		out := scrub(s, []string{secret})
		if len(out) > maxDescription+len("…") {
			t.Fatalf("output of %d bytes", len(out))
		}
		if len(secret) >= 3 && utf8.ValidString(secret) && strings.Contains(out, secret) {
			t.Fatalf("scrub(%q, %q) = %q still contains the secret", s, secret, out)
		}
	})
}
