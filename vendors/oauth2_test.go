package vendors

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/secret"
)

// fakeEndpoint is an RFC 6749 token endpoint that checks what it receives.
type fakeEndpoint struct {
	t      *testing.T
	status int
	ctype  string
	body   string
	delay  time.Duration
	header http.Header
	check  func(t *testing.T, r *http.Request, form url.Values)
	calls  int
}

func (f *fakeEndpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.calls++
	if r.Method != http.MethodPost {
		f.t.Errorf("method = %s, want POST", r.Method)
	}
	if err := r.ParseForm(); err != nil {
		f.t.Errorf("form: %v", err)
	}
	if f.check != nil {
		f.check(f.t, r, r.PostForm)
	}
	if f.delay > 0 {
		select {
		case <-time.After(f.delay):
		case <-r.Context().Done():
			return
		}
	}
	for k, v := range f.header {
		w.Header()[k] = v
	}
	if f.ctype != "" {
		w.Header().Set("Content-Type", f.ctype)
	}
	w.WriteHeader(f.status)
	_, _ = w.Write([]byte(f.body))
}

func prepareOAuth2(t *testing.T, tokenURL string, extra Settings, creds map[string]string) Call {
	t.Helper()
	set := Settings{"token_url": tokenURL, "default_ttl": "5m", "timeout": "2s"}.Overlay(extra)
	call, err := OAuth2().ResolveCall(Input{Settings: set, Credentials: secret.FromStrings(creds)})
	if err != nil {
		t.Fatalf("ResolveCall: %v", err)
	}
	return call
}

func TestOAuth2Variations(t *testing.T) {
	t.Parallel()
	creds := map[string]string{"client_id": "my client", "client_secret": "s3cr:et&"}
	tests := []struct {
		name     string
		endpoint fakeEndpoint
		settings Settings
		wantErr  Kind
		wantLife time.Duration
		wantType string
		wantSrc  string
		calls    int
	}{
		{
			name: "numeric expires_in, client_secret_basic encodes before base64",
			endpoint: fakeEndpoint{status: 200, ctype: "application/json", body: `{"access_token":"tok","token_type":"bearer","expires_in":3600}`,
				check: func(t *testing.T, r *http.Request, form url.Values) {
					want := "Basic " + base64.StdEncoding.EncodeToString([]byte("my+client:s3cr%3Aet%26"))
					if got := r.Header.Get("Authorization"); got != want {
						t.Errorf("Authorization = %q, want %q", got, want)
					}
					if got := r.Header.Get("Content-Type"); got != "application/x-www-form-urlencoded" {
						t.Errorf("Content-Type = %q", got)
					}
					if form.Get("grant_type") != "client_credentials" || form.Has("client_secret") || form.Has("client_id") {
						t.Errorf("form = %v", form)
					}
				}},
			wantLife: time.Hour, wantType: "Bearer", wantSrc: "expires_in", calls: 1,
		},
		{
			name:     "client_secret_post",
			settings: Settings{"client_auth": "client_secret_post"},
			endpoint: fakeEndpoint{status: 200, ctype: "application/json", body: `{"access_token":"tok","expires_in":60}`,
				check: func(t *testing.T, r *http.Request, form url.Values) {
					if r.Header.Get("Authorization") != "" || form.Get("client_id") != "my client" || form.Get("client_secret") != "s3cr:et&" {
						t.Errorf("form = %v, auth = %q", form, r.Header.Get("Authorization"))
					}
				}},
			wantLife: time.Minute, wantType: "Bearer", wantSrc: "expires_in", calls: 1,
		},
		{
			name:     "string expires_in",
			endpoint: fakeEndpoint{status: 200, ctype: "application/json", body: `{"access_token":"tok","token_type":"mac","expires_in":"120"}`},
			wantLife: 2 * time.Minute, wantType: "mac", wantSrc: "expires_in", calls: 1,
		},
		{
			name:     "missing expires_in falls back to default_ttl",
			endpoint: fakeEndpoint{status: 200, ctype: "application/json", body: `{"access_token":"tok"}`},
			wantLife: 5 * time.Minute, wantType: "Bearer", wantSrc: "default_ttl", calls: 1,
		},
		{
			name:     "text/plain answer is read as form",
			endpoint: fakeEndpoint{status: 200, ctype: "text/plain", body: `access_token=tok&token_type=bearer&expires_in=30`},
			wantLife: 30 * time.Second, wantType: "Bearer", wantSrc: "expires_in", calls: 1,
		},
		{
			name:     "error member with 200 is an error",
			endpoint: fakeEndpoint{status: 200, ctype: "application/json", body: `{"error":"invalid_grant"}`},
			wantErr:  KindRejected, calls: 1,
		},
		{
			name:     "5xx is retried, then unavailable",
			endpoint: fakeEndpoint{status: 503, ctype: "text/html", body: `<html>down</html>`},
			wantErr:  KindUnavailable, calls: maxAttempts,
		},
		{
			name:     "400 is never retried",
			endpoint: fakeEndpoint{status: 400, ctype: "application/json", body: `{"error":"invalid_scope"}`},
			wantErr:  KindBadRequest, calls: 1,
		},
		{
			name:     "401 without body is rejected credentials",
			endpoint: fakeEndpoint{status: 401},
			wantErr:  KindRejected, calls: 1,
		},
		{
			name:     "body over the size limit",
			endpoint: fakeEndpoint{status: 200, ctype: "application/json", body: `{"access_token":"` + strings.Repeat("a", MaxAnswerBytes) + `"}`},
			wantErr:  KindBadResponse, calls: 1,
		},
		{
			name:     "no access_token",
			endpoint: fakeEndpoint{status: 200, ctype: "application/json", body: `{"token_type":"bearer"}`},
			wantErr:  KindBadResponse, calls: 1,
		},
		{
			name:     "slow server hits the timeout",
			settings: Settings{"timeout": "150ms"},
			endpoint: fakeEndpoint{status: 200, ctype: "application/json", body: `{"access_token":"tok"}`, delay: 2 * time.Second},
			wantErr:  KindUnavailable,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ep := tc.endpoint
			ep.t = t
			srv := httptest.NewServer(&ep)
			defer srv.Close()
			call := prepareOAuth2(t, srv.URL+"/token", tc.settings, creds)
			before := time.Now()
			tok, err := call.Fetch(context.Background(), "")
			if tc.wantErr != 0 {
				var ve *Error
				if !errors.As(err, &ve) || ve.Kind != tc.wantErr {
					t.Fatalf("err = %v, want kind %v", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "s3cr:et&") {
					t.Fatalf("error leaks the secret: %v", err)
				}
			} else {
				if err != nil {
					t.Fatalf("Fetch: %v", err)
				}
				if tok.AccessToken != "tok" || tok.TokenType != tc.wantType || tok.ExpirySource != tc.wantSrc {
					t.Fatalf("token = %+v", tok)
				}
				if life := tok.ExpiresAt.Sub(tok.IssuedAt); life != tc.wantLife {
					t.Fatalf("lifetime = %v, want %v", life, tc.wantLife)
				}
				if tok.IssuedAt.Before(before) {
					t.Fatalf("IssuedAt %v before the request", tok.IssuedAt)
				}
			}
			if tc.calls != 0 && ep.calls != tc.calls {
				t.Fatalf("endpoint called %d times, want %d", ep.calls, tc.calls)
			}
		})
	}
}

func TestOAuth2ResolveCallRejectsBadInput(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		settings Settings
		creds    map[string]string
		params   map[string]string
		field    string
	}{
		{"unknown credential", Settings{"token_url": "https://idp.example/token"}, map[string]string{"client_id": "a", "client_secret": "b", "pin": "1"}, nil, "credentials.pin"},
		{"missing client_secret", Settings{"token_url": "https://idp.example/token"}, map[string]string{"client_id": "a"}, nil, "credentials.client_secret"},
		{"password grant needs username", Settings{"token_url": "https://idp.example/token", "grant_type": "password"}, map[string]string{"client_id": "a", "client_secret": "b"}, nil, "credentials.username"},
		{"unknown param", Settings{"token_url": "https://idp.example/token"}, map[string]string{"client_id": "a", "client_secret": "b"}, map[string]string{"tenant": "x"}, "params.tenant"},
		{"scope fixed by settings", Settings{"token_url": "https://idp.example/token", "scope": "a"}, map[string]string{"client_id": "a", "client_secret": "b"}, map[string]string{"scope": "admin"}, "params.scope"},
		{"scope with a quote", Settings{"token_url": "https://idp.example/token"}, map[string]string{"client_id": "a", "client_secret": "b"}, map[string]string{"scope": `a"b`}, "params.scope"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := OAuth2().ResolveCall(Input{Settings: tc.settings, Credentials: secret.FromStrings(tc.creds), Params: tc.params})
			var ae *ArgumentError
			if !errors.As(err, &ae) || ae.Field != tc.field {
				t.Fatalf("err = %v, want ArgumentError on %s", err, tc.field)
			}
		})
	}
}

func TestOAuth2RefreshFallsBackToPrimaryGrant(t *testing.T) {
	t.Parallel()
	var grants []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		grants = append(grants, r.PostForm.Get("grant_type"))
		w.Header().Set("Content-Type", "application/json")
		if r.PostForm.Get("grant_type") == "refresh_token" {
			w.WriteHeader(400)
			_, _ = w.Write([]byte(`{"error":"invalid_grant"}`))
			return
		}
		_, _ = w.Write([]byte(`{"access_token":"new","expires_in":60,"refresh_token":"r2"}`))
	}))
	defer srv.Close()
	call := prepareOAuth2(t, srv.URL, nil, map[string]string{"client_id": "a", "client_secret": "b"})
	tok, err := call.Fetch(context.Background(), "r1")
	if err != nil || tok.AccessToken != "new" || tok.RefreshToken != "r2" {
		t.Fatalf("Fetch = %+v, %v", tok, err)
	}
	if strings.Join(grants, ",") != "refresh_token,client_credentials" {
		t.Fatalf("grants = %v", grants)
	}
}
