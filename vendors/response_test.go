package vendors

import (
	"strings"
	"testing"
)

// TestParseDocumentedAnswers feeds the documents' literal answers to the
// parser directly.
func TestParseDocumentedAnswers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, ctype, body                string
		token, tokenType, scope, refresh string
		expiresIn                        string
	}{
		{"smartdocumentor", "application/json", smartDocumentorAnswer, "your access token", "Bearer", "WebAPI", "", "3600"},
		{"brightpattern trailing comma", "application/json", brightPatternAnswer, "eyJhbGciOiJSUzI1NiI5q9Jgt...6HznsvPWy7UP3MINA", "Bearer", "", "", `"3599"`},
		{"brightpattern without Content-Type", "", brightPatternAnswer, "eyJhbGciOiJSUzI1NiI5q9Jgt...6HznsvPWy7UP3MINA", "Bearer", "", "", `"3599"`},
		// What net/http (and many servers) label a body sent with no type.
		{"brightpattern as text/plain", "text/plain; charset=utf-8", brightPatternAnswer, "eyJhbGciOiJSUzI1NiI5q9Jgt...6HznsvPWy7UP3MINA", "Bearer", "", "", `"3599"`},
		{"form as text/plain", "text/plain", "access_token=abc&token_type=bearer&expires_in=60", "abc", "bearer", "", "", `"60"`},
		{"saasu JSON", "application/json; charset=utf-8", saasuJSONAnswer, saasuAccessToken, "Bearer", saasuScope, saasuRefreshToken, "10800"},
		{"saasu text/json", "text/json", saasuJSONAnswer, saasuAccessToken, "Bearer", saasuScope, saasuRefreshToken, "10800"},
		{"saasu XML", "application/xml", saasuXMLAnswer, saasuAccessToken, "Bearer", saasuScope, saasuRefreshToken, `"10800"`},
		{"saasu text/xml", "text/xml; charset=utf-8", saasuXMLAnswer, saasuAccessToken, "Bearer", saasuScope, saasuRefreshToken, `"10800"`},
		{"comma inside a string is kept", "application/json", `{"access_token":"a,}b",}`, "a,}b", "", "", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a, err := parseAnswer(tc.ctype, []byte(tc.body))
			if err != nil {
				t.Fatalf("parseAnswer: %v", err)
			}
			if a.AccessToken != tc.token || a.TokenType != tc.tokenType || a.Scope != tc.scope || a.RefreshToken != tc.refresh || strings.TrimSpace(string(a.ExpiresIn)) != tc.expiresIn {
				t.Fatalf("answer %+v (expires_in %s)", a, a.ExpiresIn)
			}
		})
	}
}

func TestParseAnswerRejectsJunk(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ ctype, body string }{
		{"application/json", `{"access_token":`},
		{"application/json", `["access_token"]`},
		{"application/xml", `<a><access_token>t</access_token>`},
		{"application/xml", `<a/><b/>`},
		{"application/xml", `<!DOCTYPE a [<!ENTITY x "y">]><a><access_token>&x;</access_token></a>`},
	} {
		if a, err := parseAnswer(tc.ctype, []byte(tc.body)); err == nil && a.AccessToken != "" {
			t.Errorf("%s %q parsed as %+v", tc.ctype, tc.body, a)
		}
	}
}
