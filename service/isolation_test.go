package service

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
	"github.com/tokenbroker/tokenbroker/internal/reqinfo"
	"github.com/tokenbroker/tokenbroker/secret"
	"github.com/tokenbroker/tokenbroker/store"
	"github.com/tokenbroker/tokenbroker/vendors"
	"github.com/tokenbroker/tokenbroker/vendors/budget"
)

// fieldViolation returns the BadRequest field of an INVALID_ARGUMENT.
func fieldViolation(t *testing.T, err error) string {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != codes.InvalidArgument {
		t.Fatalf("code = %v (%v), want InvalidArgument", st.Code(), err)
	}
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok && len(br.FieldViolations) > 0 {
			return br.FieldViolations[0].Field
		}
	}
	t.Fatalf("no BadRequest field violation in %v", err)
	return ""
}

func TestInlineCallMustBringItsOwnSecret(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	s, v := newTestService(t, 3600, func(c *Config) {
		c.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
		c.VendorSettings["oauth2"] = vendors.Settings{
			"token_url": c.VendorSettings["smartdocumentor"]["token_url"],
			// The broker's own secret material: for profiles only.
			"client_auth":         "tls_client_auth",
			"tls_client_cert":     "/nonexistent/broker.crt",
			"tls_client_key":      "/nonexistent/broker.key",
			"extra_params.apikey": "operator-secret",
		}
	})
	ctx, _ := reqinfo.With(context.Background(), "req-1")
	reqinfo.SetPrincipal(ctx, "attacker")
	tests := []struct {
		name  string
		req   *tokenbrokerv1.GetTokenRequest
		field string
	}{
		{"client_id alone with the broker's certificate", &tokenbrokerv1.GetTokenRequest{Vendor: "oauth2", Credentials: map[string]string{"client_id": "victim"}}, "credentials"},
		{"a client id alone", &tokenbrokerv1.GetTokenRequest{Vendor: "smartdocumentor", Credentials: map[string]string{"client_id": "id"}}, "credentials.client_secret"},
		{"an empty secret", &tokenbrokerv1.GetTokenRequest{Vendor: "smartdocumentor", Credentials: map[string]string{"client_id": "id", "client_secret": ""}}, "credentials.client_secret"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.GetToken(ctx, tc.req)
			if got := fieldViolation(t, err); got != tc.field {
				t.Fatalf("field = %q, want %q", got, tc.field)
			}
		})
	}
	if n := v.calls.Load(); n != 0 {
		t.Fatalf("refused inline calls reached the vendor %d times", n)
	}
	if !strings.Contains(logs.String(), `"decision":"deny"`) || !strings.Contains(logs.String(), `"principal":"attacker"`) {
		t.Fatalf("refusals were not audited:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), "operator-secret") {
		t.Fatal("the audit line carries a secret")
	}

	// An inline call with its own secret never borrows vendor-level
	// secret settings.
	r, err := s.resolve(s.snapshot.Load(), selector{vendor: "oauth2", credentials: map[string]string{"client_id": "own", "client_secret": "own-secret"}})
	if err == nil {
		t.Fatalf("resolved with client_auth tls_client_auth and no certificate: %+v", r.settings)
	}
	// The inline call ends up without the broker's certificate, so its
	// client_auth can no longer be tls_client_auth: an operator error, not
	// a way in.
	var ce *vendors.ConfigError
	if !errors.As(err, &ce) || ce.Setting != "client_auth" {
		t.Fatalf("err = %T %v, want the ConfigError of client_auth", err, err)
	}
}

func TestInlineSettingsDropSecretMaterial(t *testing.T) {
	t.Parallel()
	s, _ := newTestService(t, 3600, func(c *Config) {
		c.VendorSettings["oauth2"] = vendors.Settings{
			"token_url":           c.VendorSettings["smartdocumentor"]["token_url"],
			"extra_params.apikey": "operator-secret",
			"audience":            "api",
		}
		c.Profiles["op"] = Profile{Vendor: "oauth2", Credentials: secret.Map{"client_id": secret.New("id"), "client_secret": secret.New("s")}}
	})
	inline, err := s.resolve(s.snapshot.Load(), selector{vendor: "oauth2", credentials: map[string]string{"client_id": "id", "client_secret": "s"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := inline.settings["extra_params.apikey"]; ok {
		t.Fatal("an inline call got the vendor's extra_params")
	}
	if inline.settings["audience"] != "api" {
		t.Fatal("an inline call lost a non-secret vendor setting")
	}
	profile, err := s.resolve(s.snapshot.Load(), selector{profile: "op"})
	if err != nil {
		t.Fatal(err)
	}
	if profile.settings["extra_params.apikey"] != "operator-secret" {
		t.Fatal("a profile lost the vendor's extra_params")
	}
	if inline.key == profile.key {
		t.Fatal("an inline call with a profile's credentials shares the profile's cache entry")
	}
}

func TestInlineCallNeverSharesAProfilesEntry(t *testing.T) {
	t.Parallel()
	s, v := newTestService(t, 3600, nil)
	ctx := context.Background()
	p, err := s.GetToken(ctx, &tokenbrokerv1.GetTokenRequest{Profile: "p"})
	if err != nil {
		t.Fatal(err)
	}
	// Same vendor, same credentials as profile p.
	in, err := s.GetToken(ctx, &tokenbrokerv1.GetTokenRequest{Vendor: "smartdocumentor", Credentials: map[string]string{"client_id": "id", "client_secret": "s1"}})
	if err != nil {
		t.Fatal(err)
	}
	if in.CacheHit || in.AccessToken == p.AccessToken || v.calls.Load() != 2 {
		t.Fatalf("inline call got the profile's token (hit %v, vendor calls %d)", in.CacheHit, v.calls.Load())
	}
}

func TestProfileParams(t *testing.T) {
	t.Parallel()
	s, v := newTestService(t, 3600, func(c *Config) {
		c.VendorSettings["oauth2"] = vendors.Settings{"token_url": c.VendorSettings["smartdocumentor"]["token_url"]}
		creds := secret.Map{"client_id": secret.New("id"), "client_secret": secret.New("s")}
		c.Profiles["pinned"] = Profile{Vendor: "oauth2", Credentials: creds}
		c.Profiles["fixed"] = Profile{Vendor: "oauth2", Credentials: creds, Params: map[string]string{"scope": "read"}}
		c.Profiles["any-scope"] = Profile{Vendor: "oauth2", Credentials: creds, AllowParams: map[string][]string{"scope": nil}}
		c.Profiles["listed"] = Profile{Vendor: "oauth2", Credentials: creds, AllowParams: map[string][]string{"scope": {"read", "read write"}}}
	})
	ctx := context.Background()
	tests := []struct {
		name    string
		profile string
		scope   string
		ok      bool
	}{
		{"no allow_params: no param", "pinned", "admin:all", false},
		{"fixed, same value", "fixed", "read", true},
		{"fixed, other value", "fixed", "admin:all", false},
		{"any value", "any-scope", "whatever", true},
		{"listed value", "listed", "read write", true},
		{"value not listed", "listed", "admin:all", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := v.calls.Load()
			_, err := s.GetToken(ctx, &tokenbrokerv1.GetTokenRequest{Profile: tc.profile, Params: map[string]string{"scope": tc.scope}})
			if tc.ok {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if got := fieldViolation(t, err); got != "params.scope" {
				t.Fatalf("field = %q, want params.scope", got)
			}
			if v.calls.Load() != before {
				t.Fatal("a refused param reached the vendor")
			}
		})
	}
	// Without params the profile works as configured.
	if _, err := s.GetToken(ctx, &tokenbrokerv1.GetTokenRequest{Profile: "pinned"}); err != nil {
		t.Fatal(err)
	}
}

// rotatingVendor is an RFC 6749 endpoint that answers client_credentials
// and refresh_token grants with a new refresh token each time, after a
// delay, and records every refresh token presented.
type rotatingVendor struct {
	life  int
	delay time.Duration

	mu        sync.Mutex
	n         int
	presented map[string]int
	grants    map[string]int
}

func (v *rotatingVendor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	time.Sleep(v.delay)
	v.mu.Lock()
	v.n++
	n := v.n
	grant := r.PostForm.Get("grant_type")
	v.grants[grant]++
	if grant == "refresh_token" {
		v.presented[r.PostForm.Get("refresh_token")]++
	}
	v.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"access_token":"tok-%d","token_type":"Bearer","expires_in":%d,"refresh_token":"rt-%d"}`, n, v.life, n)
}

func (v *rotatingVendor) reused() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []string
	for rt, n := range v.presented {
		if n > 1 {
			out = append(out, fmt.Sprintf("%s x%d", rt, n))
		}
	}
	return out
}

// With the memory store, a refresh ahead and a miss (force_refresh, or a
// min_ttl the cached token no longer meets) used to be two flights, and
// presented the same refresh token twice.
func TestRefreshTokenNeverPresentedTwiceWithTheMemoryStore(t *testing.T) {
	t.Parallel()
	v := &rotatingVendor{life: 2, delay: 50 * time.Millisecond, presented: map[string]int{}, grants: map[string]int{}}
	srv := httptest.NewServer(v)
	t.Cleanup(srv.Close)
	s := New(Config{
		VendorSettings: map[string]vendors.Settings{"oauth2": {"token_url": srv.URL + "/token", "client_auth": "client_secret_post"}},
		Profiles: map[string]Profile{
			"p": {Vendor: "oauth2", Credentials: secret.Map{"client_id": secret.New("id"), "client_secret": secret.New("s")}},
		},
		FingerprintKey:       []byte("k"),
		RefreshAhead:         0.5,
		ForceRefreshInterval: 0, // every force_refresh asks the vendor
	})
	t.Cleanup(s.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var calls, failures atomic.Int64
	for w := range 8 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil && i < 2000; i++ {
				// Refresh ahead starts at 45-55% of the 2 s life; a
				// min_ttl of 1 s misses from 50%: the two meet.
				req := &tokenbrokerv1.GetTokenRequest{Profile: "p", MinTtl: durationpb.New(time.Duration(i%2) * time.Second)}
				req.ForceRefresh = (i+w)%400 == 0
				if _, err := s.GetToken(ctx, req); err != nil && ctx.Err() == nil {
					failures.Add(1)
				}
				calls.Add(1)
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	s.Close()
	if reused := v.reused(); len(reused) > 0 {
		t.Fatalf("refresh tokens presented more than once: %v", reused)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.grants["refresh_token"] < 3 {
		t.Fatalf("only %d refresh grants in %d calls: the test did not exercise refreshes", v.grants["refresh_token"], calls.Load())
	}
	if failures.Load() > 0 {
		t.Fatalf("%d calls failed", failures.Load())
	}
	t.Logf("%d calls, %d refresh grants, %d primary grants, 0 refresh tokens presented twice", calls.Load(), v.grants["refresh_token"], v.grants["client_credentials"])
}

// The shortest form of the storm above: a hit past the refresh point
// starts a refresh ahead with rt-0 while the vendor takes 200 ms; a
// force_refresh right after must join it, not present rt-0 again.
func TestForceRefreshJoinsTheRefreshAhead(t *testing.T) {
	t.Parallel()
	v := &rotatingVendor{life: 3600, delay: 200 * time.Millisecond, presented: map[string]int{}, grants: map[string]int{}}
	srv := httptest.NewServer(v)
	t.Cleanup(srv.Close)
	s := New(Config{
		VendorSettings: map[string]vendors.Settings{"oauth2": {"token_url": srv.URL + "/token", "client_auth": "client_secret_post"}},
		Profiles: map[string]Profile{
			"p": {Vendor: "oauth2", Credentials: secret.Map{"client_id": secret.New("id"), "client_secret": secret.New("s")}},
		},
		FingerprintKey:       []byte("k"),
		RefreshAhead:         0.5,
		ForceRefreshInterval: 0, // every force_refresh asks the vendor
	})
	t.Cleanup(s.Close)
	ctx := context.Background()
	r, err := s.resolve(s.snapshot.Load(), selector{profile: "p"})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if err := s.store.Put(ctx, r.key, store.Entry{AccessToken: "tok-0", TokenType: "Bearer", RefreshToken: "rt-0",
		IssuedAt: now.Add(-3 * time.Hour), FetchedAt: now.Add(-3 * time.Hour), ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if resp, err := s.GetToken(ctx, &tokenbrokerv1.GetTokenRequest{Profile: "p", MinTtl: durationpb.New(0)}); err != nil || !resp.CacheHit {
		t.Fatalf("hit: %v %v", resp, err)
	}
	forced, err := s.GetToken(ctx, &tokenbrokerv1.GetTokenRequest{Profile: "p", ForceRefresh: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if reused := v.reused(); len(reused) > 0 {
		t.Fatalf("refresh tokens presented more than once: %v", reused)
	}
	if forced.AccessToken == "tok-0" {
		t.Fatal("force_refresh answered the old token")
	}
}

func TestMemoryStoreRefusesAnOlderWrite(t *testing.T) {
	t.Parallel()
	m := store.NewMemory(0)
	ctx := context.Background()
	now := time.Now()
	newer := store.Entry{AccessToken: "new", RefreshToken: "rt-new", IssuedAt: now, ExpiresAt: now.Add(time.Hour)}
	older := store.Entry{AccessToken: "old", RefreshToken: "rt-old", IssuedAt: now.Add(-time.Second), ExpiresAt: now.Add(time.Hour)}
	if err := m.Put(ctx, "k", newer); err != nil {
		t.Fatal(err)
	}
	if err := m.Put(ctx, "k", older); err != store.ErrStale {
		t.Fatalf("older write: err = %v, want ErrStale", err)
	}
	if e, _ := m.Get(ctx, "k"); e.RefreshToken != "rt-new" {
		t.Fatalf("the older write replaced the newer refresh token: %q", e.RefreshToken)
	}
}

func TestMissLimitPerClient(t *testing.T) {
	t.Parallel()
	s, v := newTestService(t, 3600, func(c *Config) {
		c.MissesPerMinute, c.MissBurst = 60, 3
		c.Misses = budget.NewClientLimiter(nil, nil)
	})
	as := func(principal string) context.Context {
		ctx, _ := reqinfo.With(context.Background(), "r")
		reqinfo.SetPrincipal(ctx, principal)
		return ctx
	}
	attacker, victim := as("attacker"), as("victim")
	inline := func(i int) *tokenbrokerv1.GetTokenRequest {
		return &tokenbrokerv1.GetTokenRequest{Vendor: "smartdocumentor", Credentials: map[string]string{"client_id": fmt.Sprint("id-", i), "client_secret": "s"}}
	}
	var refused error
	for i := range 10 {
		if _, err := s.GetToken(attacker, inline(i)); err != nil {
			refused = err
			break
		}
	}
	st := status.Convert(refused)
	if st.Code() != codes.ResourceExhausted {
		t.Fatalf("distinct inline credentials past the burst: %v, want RESOURCE_EXHAUSTED", refused)
	}
	var retry bool
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.RetryDelay.AsDuration() > 0 {
			retry = true
		}
	}
	if !retry {
		t.Fatalf("no RetryInfo in %v", st.Details())
	}
	if n := v.calls.Load(); n != 3 {
		t.Fatalf("vendor requests = %d, want the burst, 3", n)
	}
	// Another client is not charged for the attacker's misses, and hits
	// cost nothing.
	if _, err := s.GetToken(victim, &tokenbrokerv1.GetTokenRequest{Profile: "p"}); err != nil {
		t.Fatalf("the victim paid for the attacker's misses: %v", err)
	}
	if _, err := s.GetToken(attacker, inline(0)); err != nil {
		t.Fatalf("a cached token was refused: %v", err)
	}
}

func TestAheadTableIsBounded(t *testing.T) {
	t.Parallel()
	a := newAheadTable(10)
	now := time.Now()
	for i := range 100 {
		key := fmt.Sprint("k", i)
		if !a.start(key, now, now.Add(time.Minute)) {
			t.Fatalf("%s: refused a first refresh", key)
		}
		a.failed(key, now.Add(time.Hour))
	}
	if a.len() > 10 {
		t.Fatalf("%d keys kept, bound 10", a.len())
	}
	if a.start("k99", now, now.Add(time.Minute)) {
		t.Fatal("a key in its failure backoff started again")
	}
	a.done("k99")
	if !a.start("k99", now, now.Add(time.Minute)) {
		t.Fatal("a key whose refresh succeeded cannot start again")
	}
}

// panickyStrategy's Fetch panics: a vendor strategy with a bug.
type panickyStrategy struct{}

func (panickyStrategy) Info() vendors.Info {
	return vendors.Info{ID: "panicky", RequiredCredentials: []string{"client_id", "client_secret"}}
}

func (panickyStrategy) ResolveCall(vendors.Input) (vendors.Call, error) { return panickyCall{}, nil }

type panickyCall struct{}

func (panickyCall) Target() string { return "https://panicky.example/token" }
func (panickyCall) Fetch(context.Context, string) (*vendors.Token, error) {
	panic("a bug in a vendor strategy")
}

// A panic inside a fetch flight runs on singleflight's goroutine, where no
// interceptor can catch it: the flight recovers it, and the callers get
// INTERNAL while the process goes on.
func TestPanicInAFetchFlight(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	s := New(Config{
		Registry:       vendors.NewRegistry(panickyStrategy{}),
		Profiles:       map[string]Profile{"p": {Vendor: "panicky", Credentials: secret.Map{"client_id": secret.New("id"), "client_secret": secret.New("s")}}},
		FingerprintKey: []byte("k"),
		Logger:         slog.New(slog.NewJSONHandler(&logs, nil)),
	})
	t.Cleanup(s.Close)
	for range 2 {
		_, err := s.GetToken(context.Background(), &tokenbrokerv1.GetTokenRequest{Profile: "p"})
		if st := status.Convert(err); st.Code() != codes.Internal || st.Message() != "internal error" {
			t.Fatalf("answered %v, want INTERNAL \"internal error\"", err)
		}
	}
	if !strings.Contains(logs.String(), "a bug in a vendor strategy") || !strings.Contains(logs.String(), "goroutine") {
		t.Fatalf("the panic was not logged with its stack:\n%s", logs.String())
	}
}

// A caller that joined another's flight takes its error only when it is
// the vendor's answer for the key; a refresh ahead that stopped because
// Redis failed must not fail the misses that joined it.
func TestErrorAnswersJoiners(t *testing.T) {
	t.Parallel()
	s, _ := newTestService(t, 3600, nil)
	as := func(principal string) context.Context {
		ctx, _ := reqinfo.With(context.Background(), "r")
		reqinfo.SetPrincipal(ctx, principal)
		return ctx
	}
	tests := []struct {
		name   string
		err    error
		answer bool
	}{
		{"vendor rejected", &vendors.Error{Kind: vendors.KindRejected}, true},
		{"remembered rejection", &rememberedRejection{err: &vendors.Error{Kind: vendors.KindRejected}}, true},
		{"vendor down", fmt.Errorf("fetch: %w", &vendors.Error{Kind: vendors.KindUnavailable}), true},
		{"budget", &budget.ExhaustedError{Vendor: "v"}, true},
		{"panic", errFlightPanicked, true},
		{"refresh ahead stopped by Redis", errors.New("redisstore: lease: i/o timeout"), false},
		{"the starter's deadline", context.DeadlineExceeded, false},
		{"the starter's cancellation", context.Canceled, false},
		{"another client's miss limit", &missLimitError{principal: "other"}, false},
		{"this client's miss limit", &missLimitError{principal: "me"}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := s.errorAnswers(as("me"), tc.err); got != tc.answer {
				t.Fatalf("errorAnswers = %v, want %v", got, tc.answer)
			}
		})
	}
}
