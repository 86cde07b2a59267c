package vendors

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/secret"
)

// TestErrorAnswers: vendor errors in JSON, XML or plain text map to Kinds;
// the OAuth error and a truncated description reach the caller, the
// request's secrets never do, in any encoding the vendor might echo.
func TestErrorAnswers(t *testing.T) {
	t.Parallel()
	const secretValue = `s3cr:et&<"x">`
	long := strings.Repeat("é", 300)
	tests := []struct {
		name      string
		answer    cannedAnswer
		wantKind  Kind
		wantOAuth string
		wantDesc  string // exact, or prefix when it ends with "…"
		wantCalls int
	}{
		{name: "JSON invalid_client 401", answer: cannedAnswer{status: 401, ctype: "application/json", body: `{"error":"invalid_client"}`}, wantKind: KindRejected, wantOAuth: "invalid_client", wantCalls: 1},
		{name: "JSON error with 200", answer: cannedAnswer{status: 200, ctype: "application/json", body: `{"error":"invalid_grant","access_token":"t"}`}, wantKind: KindRejected, wantOAuth: "invalid_grant", wantCalls: 1},
		{name: "JSON invalid_scope", answer: cannedAnswer{status: 400, ctype: "application/problem+json", body: `{"error":"invalid_scope","error_description":"no such scope"}`}, wantKind: KindBadRequest, wantOAuth: "invalid_scope", wantDesc: "no such scope", wantCalls: 1},
		{name: "XML error", answer: cannedAnswer{status: 400, ctype: "text/xml", body: `<OAuthError><error>invalid_grant</error><error_description>locked</error_description></OAuthError>`}, wantKind: KindRejected, wantOAuth: "invalid_grant", wantDesc: "locked", wantCalls: 1},
		{name: "form error", answer: cannedAnswer{status: 400, ctype: "application/x-www-form-urlencoded", body: `error=unauthorized_client`}, wantKind: KindRejected, wantOAuth: "unauthorized_client", wantCalls: 1},
		{name: "plain text 403", answer: cannedAnswer{status: 403, ctype: "text/plain", body: "Forbidden for this client"}, wantKind: KindRejected, wantDesc: "Forbidden for this client", wantCalls: 1},
		{name: "echo of the raw secret is scrubbed", answer: cannedAnswer{status: 400, ctype: "application/json", body: `{"error":"invalid_request","error_description":"bad secret s3cr:et&<\"x\">"}`},
			wantKind: KindBadRequest, wantOAuth: "invalid_request", wantDesc: "bad secret [REDACTED]", wantCalls: 1},
		{name: "echo of the form-encoded secret is scrubbed", answer: cannedAnswer{status: 400, ctype: "text/plain", body: "client_secret=s3cr%3Aet%26%3C%22x%22%3E rejected"},
			wantKind: KindBadRequest, wantDesc: "client_secret=[REDACTED] rejected", wantCalls: 1},
		{name: "echo of the JSON-escaped secret is scrubbed", answer: cannedAnswer{status: 400, ctype: "text/plain", body: `{"client_secret":"s3cr:et&<\"x\">"}`},
			wantKind: KindBadRequest, wantDesc: `{"client_secret":"[REDACTED]"}`, wantCalls: 1},
		{name: "echo of the XML-escaped secret is scrubbed", answer: cannedAnswer{status: 400, ctype: "application/xml", body: `<e><error>invalid_request</error><error_description>s3cr:et&amp;&lt;&#34;x&#34;&gt;</error_description></e>`},
			wantKind: KindBadRequest, wantOAuth: "invalid_request", wantDesc: "[REDACTED]", wantCalls: 1},
		{name: "long description is truncated", answer: cannedAnswer{status: 400, ctype: "application/json", body: `{"error":"invalid_request","error_description":"` + long + `"}`},
			wantKind: KindBadRequest, wantOAuth: "invalid_request", wantDesc: strings.Repeat("é", 100) + "…", wantCalls: 1},
		{name: "control characters are flattened", answer: cannedAnswer{status: 400, ctype: "application/json", body: `{"error":"invalid_request","error_description":"a\nb\u001bc"}`},
			wantKind: KindBadRequest, wantOAuth: "invalid_request", wantDesc: "a b c", wantCalls: 1},
		{name: "HTML 404 body is dropped", answer: cannedAnswer{status: 404, ctype: "text/html", body: "<html>Not Found</html>"}, wantKind: KindBadRequest, wantCalls: 1},
		{name: "temporarily_unavailable is retried", answer: cannedAnswer{status: 503, ctype: "application/json", body: `{"error":"temporarily_unavailable"}`}, wantKind: KindUnavailable, wantOAuth: "temporarily_unavailable", wantCalls: maxAttempts},
		{name: "429 is throttled after retries", answer: cannedAnswer{status: 429, ctype: "application/json", body: `{"error":"slow_down"}`}, wantKind: KindThrottled, wantOAuth: "slow_down", wantCalls: maxAttempts},
		{name: "200 HTML is a bad response", answer: cannedAnswer{status: 200, ctype: "text/html", body: "<html><p>login</p></html>"}, wantKind: KindBadResponse, wantCalls: 1},
		{name: "200 JSON with an empty token", answer: cannedAnswer{status: 200, ctype: "application/json", body: `{"access_token":""}`}, wantKind: KindBadResponse, wantCalls: 1},
		{name: "200 JSON with a numeric token", answer: cannedAnswer{status: 200, ctype: "application/json", body: `{"access_token":12}`}, wantKind: KindBadResponse, wantCalls: 1},
		{name: "redirect is not followed", answer: cannedAnswer{status: 307, header: http.Header{"Location": {"https://elsewhere.example/token"}}}, wantKind: KindBadRequest, wantCalls: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h, base := serve(t, tc.answer)
			call, err := OAuth2().ResolveCall(Input{
				Settings:    Settings{"token_url": base + "/token", "client_auth": "client_secret_post", "default_ttl": "1m"},
				Credentials: secret.FromStrings(map[string]string{"client_id": "client-7", "client_secret": secretValue}),
				HTTPClient:  &http.Client{}, // follows redirects unless the vendor code stops it
			})
			if err != nil {
				t.Fatalf("ResolveCall: %v", err)
			}
			_, err = call.Fetch(context.Background(), "")
			var ve *Error
			if !errors.As(err, &ve) || ve.Kind != tc.wantKind || ve.OAuthError != tc.wantOAuth {
				t.Fatalf("err = %v, want kind %v with %q", err, tc.wantKind, tc.wantOAuth)
			}
			if ve.Description != tc.wantDesc {
				t.Errorf("description %q, want %q", ve.Description, tc.wantDesc)
			}
			for _, leak := range []string{secretValue, "s3cr%3Aet", "s3cr:et&amp;"} {
				if strings.Contains(err.Error(), leak) {
					t.Errorf("error leaks the secret: %v", err)
				}
			}
			if got := len(h.seen()); got != tc.wantCalls {
				t.Errorf("%d requests, want %d", got, tc.wantCalls)
			}
		})
	}
}

// TestRegisteredErrorCodesSurviveScrubbing: a credential that happens to
// be part of an error code does not mangle the code callers match on.
func TestRegisteredErrorCodesSurviveScrubbing(t *testing.T) {
	t.Parallel()
	_, base := serve(t, cannedAnswer{status: 401, ctype: "application/json", body: `{"error":"invalid_client","error_description":"unknown client"}`})
	call, err := OAuth2().ResolveCall(Input{
		Settings:    Settings{"token_url": base},
		Credentials: secret.FromStrings(map[string]string{"client_id": "client", "client_secret": "secret"}),
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = call.Fetch(context.Background(), "")
	var ve *Error
	if !errors.As(err, &ve) || ve.OAuthError != "invalid_client" || ve.Description != "unknown [REDACTED]" {
		t.Fatalf("err = %#v", ve)
	}
}

// TestNetworkErrorsAreRetried: a dead endpoint is retried with backoff and
// reported as unavailable.
func TestNetworkErrorsAreRetried(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	base := srv.URL
	srv.Close() // connection refused from now on
	call, err := OAuth2().ResolveCall(Input{
		Settings:    Settings{"token_url": base + "/token", "timeout": "3s"},
		Credentials: secret.FromStrings(map[string]string{"client_id": "client", "client_secret": "hunter2"}),
	})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = call.Fetch(context.Background(), "")
	var ve *Error
	if !errors.As(err, &ve) || ve.Kind != KindUnavailable || ve.Status != 0 {
		t.Fatalf("err = %v, want unavailable without a status", err)
	}
	// Two backoffs (100ms ±50%, 200ms ±50%) separate the three attempts.
	if elapsed := time.Since(start); elapsed < 150*time.Millisecond {
		t.Fatalf("3 attempts took %v: no backoff", elapsed)
	}
}

func TestBackoffHasJitterWithinBounds(t *testing.T) {
	t.Parallel()
	for attempt := 1; attempt <= 2; attempt++ {
		base := 100 * time.Millisecond << (attempt - 1)
		seen := map[time.Duration]bool{}
		for range 50 {
			d := backoff(attempt)
			if d < base/2 || d >= base/2+base {
				t.Fatalf("backoff(%d) = %v outside [%v, %v)", attempt, d, base/2, base*3/2)
			}
			seen[d] = true
		}
		if len(seen) < 10 {
			t.Fatalf("backoff(%d) has no jitter: %v", attempt, seen)
		}
	}
}
