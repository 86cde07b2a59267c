package vendors_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/secret"
	"github.com/tokenbroker/tokenbroker/vendors"
	"github.com/tokenbroker/tokenbroker/vendorsim"
)

// simSettings point each vendor at the simulator ({sim} is its base URL):
// the same table cmd/server's --dev mode needs.
var simSettings = map[string]vendors.Settings{
	"hotdocs_advance": {"token_url": "{sim}/hotdocs_advance/{tenancy}/auth/Authorize/ServicePrincipalLogIn"},
	"smartdocumentor": {"token_url": "{sim}/smartdocumentor/connect/token"},
	"abbyy_vantage": {
		"token_url":        "{sim}/abbyy_vantage/{region}/auth2/connect/token",
		"tenant_token_url": "{sim}/abbyy_vantage/{region}/auth2/{tenant_id}/connect/token",
	},
	"brightpattern": {"host": "demo.example.com", "token_url": "{sim}/brightpattern/{host}/configapi/v2/oauth/token"},
	"saasu":         {"token_url": "{sim}/saasu/authorisation/token", "refresh_url": "{sim}/saasu/authorisation/refresh"},
	"oauth2":        {"token_url": "{sim}/oauth2/token"},
}

// simParams are the demo accounts' params.
var simParams = map[string]map[string]string{
	"hotdocs_advance": {"tenancy": "demo"},
	"abbyy_vantage":   {"region": "eu"},
}

// simVendor is a simulator behind a test server, with the demo accounts,
// and a log of the paths it was asked for.
type simVendor struct {
	sim *vendorsim.Sim
	url string

	mu    sync.Mutex
	paths []string
}

func startSim(t *testing.T, opts ...vendorsim.Option) *simVendor {
	t.Helper()
	s := &simVendor{sim: vendorsim.New(opts...)}
	for vendor, account := range vendorsim.DemoAccounts() {
		s.sim.AddAccount(vendor, account)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.paths = append(s.paths, r.URL.Path)
		s.mu.Unlock()
		s.sim.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	s.url = srv.URL
	return s
}

func (s *simVendor) seen() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.paths)
}

// settings returns vendor's simulator settings with extra on top.
func (s *simVendor) settings(vendor string, extra vendors.Settings) vendors.Settings {
	out := vendors.Settings{"timeout": "5s"}
	for _, set := range []vendors.Settings{simSettings[vendor], extra} {
		for k, v := range set {
			out[k] = strings.ReplaceAll(v, "{sim}", s.url)
		}
	}
	return out
}

// demoCredentials are the demo account's credentials for vendor (the
// account also holds non-secret restrictions, which are not credentials).
func demoCredentials(t *testing.T, vendor string) map[string]string {
	t.Helper()
	st, ok := vendors.Default().Lookup(vendor)
	if !ok {
		t.Fatalf("no vendor %s", vendor)
	}
	info := st.Info()
	out := map[string]string{}
	for k, v := range vendorsim.DemoAccounts()[vendor] {
		if slices.Contains(info.RequiredCredentials, k) || slices.Contains(info.OptionalCredentials, k) {
			out[k] = v
		}
	}
	return out
}

func prepare(t *testing.T, vendor string, set vendors.Settings, creds, params map[string]string) (vendors.Call, error) {
	t.Helper()
	st, ok := vendors.Default().Lookup(vendor)
	if !ok {
		t.Fatalf("no vendor %s", vendor)
	}
	return st.ResolveCall(vendors.Input{Settings: set, Credentials: secret.FromStrings(creds), Params: params})
}

func mergeParams(base, extra map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range base {
		out[k] = v
	}
	for k, v := range extra {
		if v == "\x00" {
			delete(out, k)
			continue
		}
		out[k] = v
	}
	return out
}

func TestVendorsAgainstSimulator(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		vendor   string
		settings vendors.Settings
		params   map[string]string // on top of simParams; "\x00" deletes
		creds    map[string]string // on top of the demo credentials
		account  map[string]string // an extra simulator account
		ttl      time.Duration     // simulator token lifetime, 0 = documented
		wantPath string
		// success
		wantScope  string
		wantLife   time.Duration
		wantSource string
		wantResend bool // the answer carries a refresh token
		// failure
		wantKind  vendors.Kind
		wantOAuth string
	}{
		{name: "hotdocs cloud", vendor: "hotdocs_advance", wantPath: "/hotdocs_advance/demo/auth/Authorize/ServicePrincipalLogIn", wantLife: time.Hour, wantSource: "jwt_exp"},
		{name: "hotdocs on-premise HdaAuth", vendor: "hotdocs_advance", settings: vendors.Settings{"token_url": "{sim}/hotdocs_advance/{tenancy}/HdaAuth/Authorize/ServicePrincipalLogIn"},
			wantPath: "/hotdocs_advance/demo/HdaAuth/Authorize/ServicePrincipalLogIn", wantLife: time.Hour, wantSource: "jwt_exp"},
		{name: "hotdocs JWT exp sets the lifetime", vendor: "hotdocs_advance", ttl: 10 * time.Minute, wantLife: 10 * time.Minute, wantSource: "jwt_exp"},
		{name: "hotdocs wrong password", vendor: "hotdocs_advance", creds: map[string]string{"principal_password": "nope"}, wantKind: vendors.KindRejected},
		{name: "hotdocs unknown tenancy", vendor: "hotdocs_advance", params: map[string]string{"tenancy": "other"}, wantKind: vendors.KindBadRequest},

		{name: "smartdocumentor", vendor: "smartdocumentor", wantPath: "/smartdocumentor/connect/token", wantScope: "WebAPI", wantLife: time.Hour, wantSource: "expires_in"},
		{name: "smartdocumentor wrong secret is invalid_client", vendor: "smartdocumentor", creds: map[string]string{"client_secret": "nope"}, wantKind: vendors.KindRejected, wantOAuth: "invalid_client"},

		{name: "abbyy password grant", vendor: "abbyy_vantage", wantPath: "/abbyy_vantage/eu/auth2/connect/token",
			wantScope: "openid permissions global.wildcard", wantLife: 30 * 24 * time.Hour, wantSource: "expires_in"},
		{name: "abbyy client_credentials", vendor: "abbyy_vantage", settings: vendors.Settings{"grant_type": "client_credentials"},
			creds: map[string]string{"username": "", "password": ""}, wantScope: "openid permissions global.wildcard", wantLife: 30 * 24 * time.Hour, wantSource: "expires_in"},
		{name: "abbyy tenant route", vendor: "abbyy_vantage", params: map[string]string{"region": "us", "tenant_id": "3fa85f64-5717-4562"},
			account:  map[string]string{"client_id": "tenant-client", "client_secret": "tenant-secret", "username": "u@example.com", "password": "pw-tenant", "region": "us", "tenant_id": "3fa85f64-5717-4562"},
			creds:    map[string]string{"client_id": "tenant-client", "client_secret": "tenant-secret", "username": "u@example.com", "password": "pw-tenant"},
			wantPath: "/abbyy_vantage/us/auth2/3fa85f64-5717-4562/connect/token", wantScope: "openid permissions global.wildcard", wantLife: 30 * 24 * time.Hour, wantSource: "expires_in"},
		{name: "abbyy wrong password is invalid_grant", vendor: "abbyy_vantage", creds: map[string]string{"password": "nope"}, wantKind: vendors.KindRejected, wantOAuth: "invalid_grant"},
		{name: "abbyy wrong region for the account", vendor: "abbyy_vantage", params: map[string]string{"region": "au"}, wantKind: vendors.KindRejected, wantOAuth: "invalid_client"},

		{name: "brightpattern string expires_in and trailing comma", vendor: "brightpattern", wantPath: "/brightpattern/demo.example.com/configapi/v2/oauth/token",
			wantLife: 3599 * time.Second, wantSource: "expires_in"},
		{name: "brightpattern scope other than the host", vendor: "brightpattern", settings: vendors.Settings{"scope": "other.example.com"}, wantKind: vendors.KindBadRequest, wantOAuth: "invalid_scope"},
		{name: "brightpattern wrong secret", vendor: "brightpattern", creds: map[string]string{"client_secret": "nope"}, wantKind: vendors.KindRejected, wantOAuth: "invalid_client"},

		{name: "saasu JSON", vendor: "saasu", wantPath: "/saasu/authorisation/token", wantScope: "full fileid:15431 fileid:14078 fileid:2045",
			wantLife: 10800 * time.Second, wantSource: "expires_in", wantResend: true},
		{name: "saasu XML", vendor: "saasu", settings: vendors.Settings{"body_format": "xml"}, wantScope: "full fileid:15431 fileid:14078 fileid:2045",
			wantLife: 10800 * time.Second, wantSource: "expires_in", wantResend: true},
		{name: "saasu wrong password", vendor: "saasu", creds: map[string]string{"password": "nope"}, wantKind: vendors.KindRejected, wantOAuth: "invalid_grant"},
		{name: "saasu XML wrong password", vendor: "saasu", settings: vendors.Settings{"body_format": "xml"}, creds: map[string]string{"password": "nope"}, wantKind: vendors.KindRejected, wantOAuth: "invalid_grant"},

		{name: "oauth2 client_secret_basic", vendor: "oauth2", creds: map[string]string{"username": "", "password": ""}, wantPath: "/oauth2/token", wantLife: time.Hour, wantSource: "expires_in"},
		{name: "oauth2 client_secret_post, JSON body, scope param", vendor: "oauth2", settings: vendors.Settings{"client_auth": "client_secret_post", "body_format": "json"},
			params: map[string]string{"scope": "read write"}, creds: map[string]string{"username": "", "password": ""}, wantScope: "read write", wantLife: time.Hour, wantSource: "expires_in"},
		{name: "oauth2 password grant", vendor: "oauth2", settings: vendors.Settings{"grant_type": "password"}, wantLife: time.Hour, wantSource: "expires_in", wantResend: true},
		{name: "oauth2 wrong secret", vendor: "oauth2", creds: map[string]string{"client_secret": "nope", "username": "", "password": ""}, wantKind: vendors.KindRejected, wantOAuth: "invalid_client"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sv := startSim(t)
			if tc.ttl > 0 {
				sv.sim.SetTokenTTL(tc.vendor, tc.ttl)
			}
			if tc.account != nil {
				sv.sim.AddAccount(tc.vendor, tc.account)
			}
			creds := demoCredentials(t, tc.vendor)
			for k, v := range tc.creds {
				if v == "" {
					delete(creds, k)
					continue
				}
				creds[k] = v
			}
			call, err := prepare(t, tc.vendor, sv.settings(tc.vendor, tc.settings), creds, mergeParams(simParams[tc.vendor], tc.params))
			if err != nil {
				t.Fatalf("ResolveCall: %v", err)
			}
			before := time.Now()
			tok, err := call.Fetch(context.Background(), "")
			if tc.wantKind != 0 {
				var ve *vendors.Error
				if !errors.As(err, &ve) || ve.Kind != tc.wantKind || (tc.wantOAuth != "" && ve.OAuthError != tc.wantOAuth) {
					t.Fatalf("err = %v, want kind %v with %q", err, tc.wantKind, tc.wantOAuth)
				}
				for _, v := range creds {
					if len(v) >= 3 && strings.Contains(err.Error(), v) {
						t.Fatalf("error leaks a credential: %v", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			if !sv.sim.ValidToken(tc.vendor, tok.AccessToken) {
				t.Errorf("the simulator does not know the token %q", tok.AccessToken)
			}
			if tok.TokenType != "Bearer" || tok.Scope != tc.wantScope || tok.ExpirySource != tc.wantSource {
				t.Errorf("token type %q scope %q source %q; want Bearer, %q, %s", tok.TokenType, tok.Scope, tok.ExpirySource, tc.wantScope, tc.wantSource)
			}
			// The simulator's JWT exp is whole seconds from its own clock.
			if life := tok.ExpiresAt.Sub(tok.IssuedAt); life < tc.wantLife-time.Second || life > tc.wantLife+time.Second {
				t.Errorf("lifetime %v, want %v", life, tc.wantLife)
			}
			if tok.IssuedAt.Before(before) || tok.IssuedAt.After(time.Now()) {
				t.Errorf("IssuedAt %v is not when the request was sent", tok.IssuedAt)
			}
			if (tok.RefreshToken != "") != tc.wantResend {
				t.Errorf("refresh token %q, want one: %v", tok.RefreshToken, tc.wantResend)
			}
			if len(tok.Warnings) > 0 {
				t.Errorf("warnings %v", tok.Warnings)
			}
			if tc.wantPath != "" {
				if got := sv.seen(); len(got) != 1 || got[0] != tc.wantPath {
					t.Errorf("paths %v, want [%s]", got, tc.wantPath)
				}
			}
			if got := call.Target(); !strings.HasSuffix(got, sv.seen()[0]) {
				t.Errorf("Target() = %q, request went to %s", got, sv.seen()[0])
			}
		})
	}
}

// TestSaasuRefreshCycle: the password grant once, then the refresh grant,
// then the password grant again when the refresh token is refused.
func TestSaasuRefreshCycle(t *testing.T) {
	t.Parallel()
	for _, format := range []string{"json", "xml"} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			sv := startSim(t)
			call, err := prepare(t, "saasu", sv.settings("saasu", vendors.Settings{"body_format": format}), demoCredentials(t, "saasu"), nil)
			if err != nil {
				t.Fatalf("ResolveCall: %v", err)
			}
			ctx := context.Background()
			first, err := call.Fetch(ctx, "")
			if err != nil || first.RefreshToken == "" {
				t.Fatalf("password grant: %+v, %v", first, err)
			}
			second, err := call.Fetch(ctx, first.RefreshToken)
			if err != nil || second.RefreshToken == "" || second.RefreshToken == first.RefreshToken {
				t.Fatalf("refresh grant: %+v, %v", second, err)
			}
			if second.Scope != "full fileid:15431 fileid:14078 fileid:2045" || !sv.sim.ValidToken("saasu", second.AccessToken) {
				t.Fatalf("refreshed token %+v", second)
			}
			// The first refresh token was redeemed: Saasu answers
			// invalid_grant and the password grant follows.
			third, err := call.Fetch(ctx, first.RefreshToken)
			if err != nil || !sv.sim.ValidToken("saasu", third.AccessToken) {
				t.Fatalf("fallback: %+v, %v", third, err)
			}
			want := []string{
				"/saasu/authorisation/token",
				"/saasu/authorisation/refresh",
				"/saasu/authorisation/refresh",
				"/saasu/authorisation/token",
			}
			if got := sv.seen(); !slices.Equal(got, want) {
				t.Fatalf("paths %v, want %v", got, want)
			}
			if got := sv.sim.Issued("saasu"); got != 3 {
				t.Fatalf("issued %d tokens, want 3", got)
			}
		})
	}
}

// TestSaasuRefreshOutageIsNotMaskedByThePasswordGrant: only a refusal
// falls back; an outage is reported (the password grant would hit the same
// outage, and a locked account is worse than a retry later).
func TestSaasuRefreshOutageIsNotMaskedByThePasswordGrant(t *testing.T) {
	t.Parallel()
	sv := startSim(t)
	call, err := prepare(t, "saasu", sv.settings("saasu", vendors.Settings{"timeout": "1s"}), demoCredentials(t, "saasu"), nil)
	if err != nil {
		t.Fatalf("ResolveCall: %v", err)
	}
	sv.sim.FailNext("saasu", 10, http.StatusServiceUnavailable, 0)
	_, err = call.Fetch(context.Background(), "some-refresh-token")
	var ve *vendors.Error
	if !errors.As(err, &ve) || ve.Kind != vendors.KindUnavailable {
		t.Fatalf("err = %v, want unavailable", err)
	}
	for _, p := range sv.seen() {
		if p != "/saasu/authorisation/refresh" {
			t.Fatalf("paths %v: the password grant was tried during an outage", sv.seen())
		}
	}
}

// TestURLTemplateAttacks: a param that would move the request elsewhere is
// refused before anything is sent.
func TestURLTemplateAttacks(t *testing.T) {
	t.Parallel()
	tests := []struct {
		vendor string
		param  string
		value  string
	}{
		{"hotdocs_advance", "tenancy", "evil.com/x"},
		{"hotdocs_advance", "tenancy", "evil.com"},
		{"hotdocs_advance", "tenancy", "a.b"},
		{"hotdocs_advance", "tenancy", ".."},
		{"hotdocs_advance", "tenancy", "%2f"},
		{"hotdocs_advance", "tenancy", ""},
		{"hotdocs_advance", "tenancy", strings.Repeat("a", 64)},
		{"hotdocs_advance", "tenancy", "demo@evil.com"},
		{"hotdocs_advance", "tenancy", "demo:443"},
		{"hotdocs_advance", "tenancy", "DEMO"},
		{"abbyy_vantage", "region", "evil.com/x"},
		{"abbyy_vantage", "region", "de"},
		{"abbyy_vantage", "region", "EU"},
		{"abbyy_vantage", "region", ""},
		{"abbyy_vantage", "tenant_id", ".."},
		{"abbyy_vantage", "tenant_id", "."},
		{"abbyy_vantage", "tenant_id", "%2f"},
		{"abbyy_vantage", "tenant_id", "a/b"},
		{"abbyy_vantage", "tenant_id", "a?b"},
		{"abbyy_vantage", "tenant_id", "a#b"},
		{"abbyy_vantage", "tenant_id", strings.Repeat("a", 129)},
	}
	for _, tc := range tests {
		t.Run(tc.vendor+" "+tc.param+"="+tc.value, func(t *testing.T) {
			t.Parallel()
			sv := startSim(t)
			params := mergeParams(simParams[tc.vendor], map[string]string{tc.param: tc.value})
			call, err := prepare(t, tc.vendor, sv.settings(tc.vendor, nil), demoCredentials(t, tc.vendor), params)
			var ae *vendors.ArgumentError
			if !errors.As(err, &ae) || ae.Field != "params."+tc.param {
				t.Fatalf("ResolveCall = %v, %v; want an ArgumentError on params.%s", call, err, tc.param)
			}
			if n := sv.sim.Requests(tc.vendor); n != 0 {
				t.Fatalf("the simulator saw %d requests", n)
			}
		})
	}
}

// TestRetriesAgainstSimulator: 5xx and 429 are retried within the
// deadline (429 after Retry-After), other 4xx never.
func TestRetriesAgainstSimulator(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		failures   int
		status     int
		retryAfter time.Duration
		timeout    string
		wantKind   vendors.Kind
		wantCalls  int
		minElapsed time.Duration
	}{
		{name: "503 then success", failures: 1, status: 503, wantCalls: 2},
		{name: "two 502 then success", failures: 2, status: 502, wantCalls: 3},
		{name: "500 three times", failures: 3, status: 500, wantKind: vendors.KindUnavailable, wantCalls: 3},
		{name: "429 honours Retry-After", failures: 1, status: 429, retryAfter: time.Second, wantCalls: 2, minElapsed: time.Second},
		{name: "429 with Retry-After beyond the deadline", failures: 1, status: 429, retryAfter: 30 * time.Second, timeout: "2s", wantKind: vendors.KindThrottled, wantCalls: 1},
		{name: "400 is never retried", failures: 1, status: 400, wantKind: vendors.KindBadRequest, wantCalls: 1},
		{name: "401 is never retried", failures: 1, status: 401, wantKind: vendors.KindRejected, wantCalls: 1},
		{name: "404 is never retried", failures: 1, status: 404, wantKind: vendors.KindBadRequest, wantCalls: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sv := startSim(t)
			set := sv.settings("smartdocumentor", nil)
			if tc.timeout != "" {
				set["timeout"] = tc.timeout
			}
			call, err := prepare(t, "smartdocumentor", set, demoCredentials(t, "smartdocumentor"), nil)
			if err != nil {
				t.Fatalf("ResolveCall: %v", err)
			}
			sv.sim.FailNext("smartdocumentor", tc.failures, tc.status, tc.retryAfter)
			start := time.Now()
			tok, err := call.Fetch(context.Background(), "")
			elapsed := time.Since(start)
			if tc.wantKind != 0 {
				var ve *vendors.Error
				if !errors.As(err, &ve) || ve.Kind != tc.wantKind {
					t.Fatalf("err = %v, want kind %v", err, tc.wantKind)
				}
				if tc.wantKind == vendors.KindThrottled && ve.RetryAfter != tc.retryAfter {
					t.Errorf("RetryAfter = %v, want %v", ve.RetryAfter, tc.retryAfter)
				}
			} else if err != nil || !sv.sim.ValidToken("smartdocumentor", tok.AccessToken) {
				t.Fatalf("Fetch = %+v, %v", tok, err)
			}
			if got := sv.sim.Requests("smartdocumentor"); got != tc.wantCalls {
				t.Errorf("requests = %d, want %d", got, tc.wantCalls)
			}
			if elapsed < tc.minElapsed {
				t.Errorf("took %v, want at least %v", elapsed, tc.minElapsed)
			}
		})
	}
}

// TestCallerDeadlineBoundsRetries: retries stop at the caller's deadline.
func TestCallerDeadlineBoundsRetries(t *testing.T) {
	t.Parallel()
	sv := startSim(t, vendorsim.WithLatency(300*time.Millisecond))
	call, err := prepare(t, "smartdocumentor", sv.settings("smartdocumentor", nil), demoCredentials(t, "smartdocumentor"), nil)
	if err != nil {
		t.Fatalf("ResolveCall: %v", err)
	}
	sv.sim.FailNext("smartdocumentor", 3, 503, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = call.Fetch(ctx, "")
	var ve *vendors.Error
	if !errors.As(err, &ve) || ve.Kind != vendors.KindUnavailable {
		t.Fatalf("err = %v, want unavailable", err)
	}
	if elapsed := time.Since(start); elapsed > 900*time.Millisecond {
		t.Fatalf("took %v, beyond the caller's deadline", elapsed)
	}
}

// TestInfo: every vendor describes itself fully for ListVendors.
func TestInfo(t *testing.T) {
	t.Parallel()
	want := map[string]struct {
		grants, required, params, settings []string
	}{
		"hotdocs_advance": {[]string{"password"}, []string{"client_name", "principal_name", "principal_password"}, []string{"tenancy"}, []string{"domain"}},
		"smartdocumentor": {[]string{"client_credentials"}, []string{"client_id", "client_secret"}, nil, []string{"scope"}},
		"abbyy_vantage":   {[]string{"password", "client_credentials"}, []string{"client_id", "client_secret"}, []string{"region", "tenant_id"}, []string{"tenant_token_url", "grant_type", "scope"}},
		"brightpattern":   {[]string{"client_credentials"}, []string{"client_id", "client_secret"}, nil, []string{"host", "scope"}},
		"saasu":           {[]string{"password", "refresh_token"}, []string{"username", "password"}, nil, []string{"refresh_url", "body_format", "scope"}},
		"oauth2": {[]string{"client_credentials", "password", "refresh_token", "urn:ietf:params:oauth:grant-type:jwt-bearer", "urn:ietf:params:oauth:grant-type:token-exchange"}, []string{"client_id"}, []string{"scope"}, []string{"grant_type", "client_auth", "scope", "audience", "resource", "body_format", "extra_params",
			"assertion_file", "assertion_issuer", "assertion_subject", "assertion_audience", "client_assertion_file", "subject_token_file", "subject_token_type", "requested_token_type", "expire_with_assertion"}},
	}
	all := vendors.Default().All()
	if len(all) != len(want) {
		t.Fatalf("%d vendors, want %d", len(all), len(want))
	}
	for _, st := range all {
		info := st.Info()
		w, ok := want[info.ID]
		if !ok {
			t.Errorf("unexpected vendor %s", info.ID)
			continue
		}
		if !slices.Equal(info.GrantTypes, w.grants) || !slices.Equal(info.RequiredCredentials, w.required) ||
			!slices.Equal(info.Params, w.params) || !slices.Equal(info.Settings, w.settings) {
			t.Errorf("%s: %+v", info.ID, info)
		}
		if info.DisplayName == "" || !strings.HasPrefix(info.DocumentationURL, "https://") {
			t.Errorf("%s: display name %q, documentation %q", info.ID, info.DisplayName, info.DocumentationURL)
		}
		for _, k := range append([]string{"token_url", "default_ttl", "negative_ttl", "timeout", "tls_client_cert", "tls_client_key"}, w.settings...) {
			if !info.AllowsSetting(k) {
				t.Errorf("%s does not allow setting %s", info.ID, k)
			}
		}
	}
	if oauth2, _ := vendors.Default().Lookup("oauth2"); !slices.Contains(oauth2.Info().OptionalCredentials, "private_key") {
		t.Errorf("oauth2 does not take private_key")
	}
}
