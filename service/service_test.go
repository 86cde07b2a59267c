package service

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/tokenbroker/tokenbroker/config"
	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
	"github.com/tokenbroker/tokenbroker/internal/reqinfo"
	"github.com/tokenbroker/tokenbroker/secret"
	"github.com/tokenbroker/tokenbroker/store"
	"github.com/tokenbroker/tokenbroker/vendors"
)

// countingVendor is an RFC 6749 endpoint issuing numbered tokens of life
// seconds.
type countingVendor struct {
	calls atomic.Int64
	life  int
}

func (v *countingVendor) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	n := v.calls.Add(1)
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"access_token":"tok-%d","token_type":"Bearer","expires_in":%d}`, n, v.life)
}

func newTestService(t *testing.T, life int, tune func(*Config)) (*Service, *countingVendor) {
	t.Helper()
	v := &countingVendor{life: life}
	srv := httptest.NewServer(v)
	t.Cleanup(srv.Close)
	cfg := Config{
		VendorSettings: map[string]vendors.Settings{"smartdocumentor": {"token_url": srv.URL + "/connect/token"}},
		Profiles: map[string]Profile{
			"p":  {Vendor: "smartdocumentor", Credentials: secret.Map{"client_id": secret.New("id"), "client_secret": secret.New("s1")}},
			"p2": {Vendor: "smartdocumentor", Credentials: secret.Map{"client_id": secret.New("id"), "client_secret": secret.New("s2")}},
		},
		FingerprintKey: []byte("k"),
		// What package config gives a file that leaves them out.
		DefaultMinTTL:        config.DefaultMinTTL,
		ForceRefreshInterval: config.DefaultForceRefreshInterval,
	}
	if tune != nil {
		tune(&cfg)
	}
	s := New(cfg)
	t.Cleanup(s.Close)
	return s, v
}

func TestFingerprintSeparatesEveryInput(t *testing.T) {
	t.Parallel()
	s, _ := newTestService(t, 60, nil)
	creds := secret.Map{"client_id": secret.New("id"), "client_secret": secret.New("s")}
	base := fingerprint(s.snapshot.Load().fingerprintKey, "inline", "v", "https://a/token", creds, map[string]string{"region": "eu"}, vendors.Settings{"scope": "x"})
	variants := map[string]string{
		"source":   fingerprint(s.snapshot.Load().fingerprintKey, "profile:p", "v", "https://a/token", creds, map[string]string{"region": "eu"}, vendors.Settings{"scope": "x"}),
		"vendor":   fingerprint(s.snapshot.Load().fingerprintKey, "inline", "w", "https://a/token", creds, map[string]string{"region": "eu"}, vendors.Settings{"scope": "x"}),
		"url":      fingerprint(s.snapshot.Load().fingerprintKey, "inline", "v", "https://b/token", creds, map[string]string{"region": "eu"}, vendors.Settings{"scope": "x"}),
		"secret":   fingerprint(s.snapshot.Load().fingerprintKey, "inline", "v", "https://a/token", secret.Map{"client_id": secret.New("id"), "client_secret": secret.New("t")}, map[string]string{"region": "eu"}, vendors.Settings{"scope": "x"}),
		"param":    fingerprint(s.snapshot.Load().fingerprintKey, "inline", "v", "https://a/token", creds, map[string]string{"region": "us"}, vendors.Settings{"scope": "x"}),
		"setting":  fingerprint(s.snapshot.Load().fingerprintKey, "inline", "v", "https://a/token", creds, map[string]string{"region": "eu"}, vendors.Settings{"scope": "y"}),
		"boundary": fingerprint(s.snapshot.Load().fingerprintKey, "inline", "v", "https://a/token", secret.Map{"client_id": secret.New("ids"), "client_secret": secret.New("")}, map[string]string{"region": "eu"}, vendors.Settings{"scope": "x"}),
	}
	for name, fp := range variants {
		if fp == base {
			t.Errorf("changing the %s did not change the fingerprint", name)
		}
	}
	if again := fingerprint(s.snapshot.Load().fingerprintKey, "inline", "v", "https://a/token", creds, map[string]string{"region": "eu"}, vendors.Settings{"scope": "x"}); again != base {
		t.Error("fingerprint is not deterministic")
	}
	other := New(Config{FingerprintKey: []byte("other key")})
	defer other.Close()
	if fingerprint(other.snapshot.Load().fingerprintKey, "inline", "v", "https://a/token", creds, map[string]string{"region": "eu"}, vendors.Settings{"scope": "x"}) == base {
		t.Error("fingerprint does not depend on the key")
	}
}

func TestSelectorKeyIsUnambiguous(t *testing.T) {
	t.Parallel()
	sels := []selector{
		{profile: "p"},
		{vendor: "p"},
		{vendor: "v", credentials: map[string]string{"a": "bc"}},
		{vendor: "v", credentials: map[string]string{"ab": "c"}},
		{vendor: "v", params: map[string]string{"a": "bc"}},
		{vendor: "v", credentials: map[string]string{"a": "b", "c": "d"}},
		{vendor: "v", credentials: map[string]string{"a": "b|1:c"}},
	}
	seen := map[string]int{}
	for i, s := range sels {
		k := selectorKey(s)
		if j, dup := seen[k]; dup {
			t.Errorf("selectors %d and %d share key %q", i, j, k)
		}
		seen[k] = i
	}
}

func TestForceRefresh(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		interval  time.Duration
		wantFetch int64
	}{
		{"within the interval the fresh token is returned", time.Hour, 1},
		{"after the interval a new token is fetched", time.Nanosecond, 2},
		{"default interval (5s)", config.DefaultForceRefreshInterval, 1},
		{"no interval (0s): always a new token", 0, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, v := newTestService(t, 3600, func(c *Config) { c.ForceRefreshInterval = tc.interval })
			ctx := context.Background()
			if _, err := s.GetToken(ctx, &tokenbrokerv1.GetTokenRequest{Profile: "p"}); err != nil {
				t.Fatal(err)
			}
			if _, err := s.GetToken(ctx, &tokenbrokerv1.GetTokenRequest{Profile: "p", ForceRefresh: true}); err != nil {
				t.Fatal(err)
			}
			if got := v.calls.Load(); got != tc.wantFetch {
				t.Fatalf("vendor calls = %d, want %d", got, tc.wantFetch)
			}
		})
	}
}

// TestDefaultMinTTL: a request without min_ttl uses the configured default;
// a cached token with less life than that is replaced.
func TestDefaultMinTTL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		def       time.Duration
		life      int // seconds
		wantFetch int64
	}{
		{"default 30s, 60s token: cached", config.DefaultMinTTL, 60, 1},
		{"default 30s, 20s token: refetched", config.DefaultMinTTL, 20, 2},
		{"0s, 20s token: cached", 0, 20, 1},
		{"configured 5m, 60s token: refetched", 5 * time.Minute, 60, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, v := newTestService(t, tc.life, func(c *Config) { c.DefaultMinTTL = tc.def })
			ctx := context.Background()
			for range 2 {
				if _, err := s.GetToken(ctx, &tokenbrokerv1.GetTokenRequest{Profile: "p"}); err != nil {
					t.Fatal(err)
				}
			}
			if got := v.calls.Load(); got != tc.wantFetch {
				t.Fatalf("vendor calls = %d, want %d", got, tc.wantFetch)
			}
		})
	}
}

func TestRefreshAheadServesCachedAndRefreshesOnce(t *testing.T) {
	t.Parallel()
	// The cache holds a token issued long enough ago to be past the
	// refresh point, instead of the test sleeping there. The vendor's
	// tokens last an hour, so the one the refresh fetches is not due.
	s, v := newTestService(t, 3600, func(c *Config) { c.RefreshAhead = 0.5 })
	ctx := context.Background()
	r, err := s.resolve(s.snapshot.Load(), selector{profile: "p"})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	first := store.Entry{AccessToken: "tok-cached", TokenType: "Bearer",
		IssuedAt: now.Add(-2000 * time.Second), FetchedAt: now.Add(-2000 * time.Second), ExpiresAt: now.Add(1600 * time.Second)}
	if err := s.store.Put(ctx, r.key, first); err != nil {
		t.Fatal(err)
	}
	req := &tokenbrokerv1.GetTokenRequest{Profile: "p", MinTtl: durationpb.New(0)}
	for range 50 { // past 50% (±5% jitter) of its life
		resp, err := s.GetToken(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if !resp.CacheHit {
			t.Fatal("refresh ahead made a caller wait")
		}
	}
	s.bg.Wait() // the background refresh has ended
	if got := v.calls.Load(); got != 1 {
		t.Fatalf("vendor calls = %d, want 1 (one refresh ahead)", got)
	}
	after, err := s.GetToken(ctx, req)
	if err != nil || after.AccessToken == first.AccessToken || !after.CacheHit {
		t.Fatalf("after refresh ahead: %v, %v", after, err)
	}
}

func TestResolveValidation(t *testing.T) {
	t.Parallel()
	s, v := newTestService(t, 60, nil)
	long := make([]byte, maxValueLen+1)
	manyParams := map[string]string{}
	for i := range maxMapEntries + 1 {
		manyParams[fmt.Sprintf("p%d", i)] = "x"
	}
	tests := []struct {
		name string
		req  *tokenbrokerv1.GetTokenRequest
		code codes.Code
	}{
		{"profile and vendor disagree", &tokenbrokerv1.GetTokenRequest{Profile: "p", Vendor: "oauth2"}, codes.InvalidArgument},
		{"profile with inline credentials", &tokenbrokerv1.GetTokenRequest{Profile: "p", Credentials: map[string]string{"client_id": "x"}}, codes.InvalidArgument},
		{"bad profile name", &tokenbrokerv1.GetTokenRequest{Profile: "P P"}, codes.InvalidArgument},
		{"bad credential key", &tokenbrokerv1.GetTokenRequest{Vendor: "smartdocumentor", Credentials: map[string]string{"Client-Id": "x"}}, codes.InvalidArgument},
		{"value too long", &tokenbrokerv1.GetTokenRequest{Vendor: "smartdocumentor", Credentials: map[string]string{"client_id": string(long)}}, codes.InvalidArgument},
		{"too many params", &tokenbrokerv1.GetTokenRequest{Profile: "p", Params: manyParams}, codes.InvalidArgument},
		{"min_ttl over a day", &tokenbrokerv1.GetTokenRequest{Profile: "p", MinTtl: durationpb.New(25 * time.Hour)}, codes.InvalidArgument},
		{"unknown param for the vendor", &tokenbrokerv1.GetTokenRequest{Profile: "p", Params: map[string]string{"region": "eu"}}, codes.InvalidArgument},
		{"unknown vendor", &tokenbrokerv1.GetTokenRequest{Vendor: "nope", Credentials: map[string]string{"a": "b"}}, codes.NotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := s.GetToken(context.Background(), tc.req)
			if status.Code(err) != tc.code {
				t.Fatalf("code = %v (%v), want %v", status.Code(err), err, tc.code)
			}
		})
	}
	if v.calls.Load() != 0 {
		t.Fatalf("invalid requests reached the vendor %d times", v.calls.Load())
	}
}

func TestProfilesAreSeparateCacheEntries(t *testing.T) {
	t.Parallel()
	s, v := newTestService(t, 3600, nil)
	ctx := context.Background()
	a, err := s.GetToken(ctx, &tokenbrokerv1.GetTokenRequest{Profile: "p"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.GetToken(ctx, &tokenbrokerv1.GetTokenRequest{Profile: "p2"})
	if err != nil {
		t.Fatal(err)
	}
	if a.AccessToken == b.AccessToken || v.calls.Load() != 2 {
		t.Fatalf("two credential sets shared a token (calls %d)", v.calls.Load())
	}
}

func TestLogThrottle(t *testing.T) {
	t.Parallel()
	th := logThrottle{interval: time.Second}
	base := time.Unix(1000, 0)
	steps := []struct {
		at       time.Duration
		wantOK   bool
		wantHeld int64
	}{
		{0, true, 0},
		{10 * time.Millisecond, false, 0},
		{500 * time.Millisecond, false, 0},
		{time.Second, true, 2},
		{time.Second + 1, false, 0},
	}
	for i, st := range steps {
		ok, held := th.allow(base.Add(st.at))
		if ok != st.wantOK || held != st.wantHeld {
			t.Fatalf("step %d: allow = %v, %d; want %v, %d", i, ok, held, st.wantOK, st.wantHeld)
		}
	}
}

func TestAccessLogCacheOutcome(t *testing.T) {
	t.Parallel()
	s, _ := newTestService(t, 3600, nil)
	outcome := func(req *tokenbrokerv1.GetTokenRequest) string {
		ctx, info := reqinfo.With(context.Background(), "id")
		_, _ = s.GetToken(ctx, req)
		return info.Snapshot().Cache
	}
	if got := outcome(&tokenbrokerv1.GetTokenRequest{Profile: "p"}); got != "miss" {
		t.Errorf("first call: %q, want miss", got)
	}
	if got := outcome(&tokenbrokerv1.GetTokenRequest{Profile: "p"}); got != "hit" {
		t.Errorf("second call: %q, want hit", got)
	}
	r, err := s.resolve(s.snapshot.Load(), selector{profile: "p2"})
	if err != nil {
		t.Fatal(err)
	}
	s.rememberRejection(context.Background(), r, &vendors.Error{Vendor: "smartdocumentor", Kind: vendors.KindRejected}, 0)
	if got := outcome(&tokenbrokerv1.GetTokenRequest{Profile: "p2"}); got != "negative" {
		t.Errorf("negative-cache answer: %q, want negative", got)
	}
}

// TestThrottledWithinTheCallersDeadline: a vendor answering 429 with a
// Retry-After longer than the caller's remaining deadline is not retried;
// the caller gets RESOURCE_EXHAUSTED with the Retry-After in time (docs/design.md,
// Token semantics: retries fit in min(caller's deadline, vendor timeout)).
func TestThrottledWithinTheCallersDeadline(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		calls.Add(1)
		w.Header().Set("Retry-After", "3600")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTooManyRequests)
		fmt.Fprint(w, `{"error":"slow_down"}`)
	}))
	t.Cleanup(srv.Close)
	s, _ := newTestService(t, 60, func(c *Config) {
		c.VendorSettings["smartdocumentor"] = vendors.Settings{"token_url": srv.URL + "/connect/token"}
	})
	// A generous deadline, still far below the Retry-After: a caller that
	// waited for the retry would get DEADLINE_EXCEEDED after 30 s.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	_, err := s.GetToken(ctx, &tokenbrokerv1.GetTokenRequest{Profile: "p"})
	took := time.Since(start)
	st := status.Convert(err)
	if st.Code() != codes.ResourceExhausted {
		t.Fatalf("code %v (%v) after %v, want RESOURCE_EXHAUSTED", st.Code(), err, took)
	}
	var retry *errdetails.RetryInfo
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			retry = ri
		}
	}
	if retry == nil || retry.RetryDelay.AsDuration() != time.Hour {
		t.Fatalf("details %v, want RetryInfo of 1h", st.Details())
	}
	if calls.Load() != 1 {
		t.Fatalf("answered after %v with %d vendor requests, want one request", took, calls.Load())
	}
}

// A profile named alone is memoised in its own slot, read without a lock:
// the same resolution for the profile with or without its vendor, none
// for a mismatched vendor, params or an unknown profile, nothing in the
// LRU (which inline selectors share), and a slot per configuration.
func TestProfileResolutionSlots(t *testing.T) {
	t.Parallel()
	s, _ := newTestService(t, 60, nil)
	conf := s.snapshot.Load()
	first, err := s.resolve(conf, selector{profile: "p"})
	if err != nil {
		t.Fatal(err)
	}
	if got := conf.byProfile["p"].Load(); got != first {
		t.Fatalf("profile p's slot holds %p, want the resolution %p", got, first)
	}
	for _, tc := range []struct {
		name    string
		sel     selector
		same    bool // the slot's resolution, else an error
		wantErr bool
	}{
		{"the profile again", selector{profile: "p"}, true, false},
		{"with its own vendor", selector{profile: "p", vendor: "smartdocumentor"}, true, false},
		{"with another vendor", selector{profile: "p", vendor: "hotdocs"}, false, true},
		{"with params", selector{profile: "p", params: map[string]string{"region": "eu"}}, false, true},
		{"with credentials", selector{profile: "p", credentials: map[string]string{"client_secret": "x"}}, false, true},
		{"an unknown profile", selector{profile: "nope"}, false, true},
	} {
		r, err := s.resolve(conf, tc.sel)
		if (err != nil) != tc.wantErr || tc.same != (r == first) {
			t.Errorf("%s: %p, %v; want the slot's %v, an error %v", tc.name, r, err, tc.same, tc.wantErr)
		}
	}
	if n := conf.resolutions.lru.Len(); n != 0 {
		t.Errorf("the LRU holds %d resolutions after profile-only calls, want 0", n)
	}
	if other, err := s.resolve(conf, selector{profile: "p2"}); err != nil || other == first || other.key == first.key {
		t.Errorf("profile p2 resolved to %p (%v), p to %p: want one of its own", other, err, first)
	}
	inline := selector{vendor: "smartdocumentor", credentials: map[string]string{"client_id": "id", "client_secret": "x"}}
	if _, err := s.resolve(conf, inline); err != nil {
		t.Fatal(err)
	}
	if n := conf.resolutions.lru.Len(); n != 1 {
		t.Errorf("the LRU holds %d resolutions after an inline call, want 1", n)
	}
	// A new configuration starts with empty slots.
	next := newSnapshot(Config{Profiles: map[string]Profile{"p": {Vendor: "smartdocumentor"}}})
	if next.byProfile["p"].Load() != nil || next.byProfile["p"] == conf.byProfile["p"] {
		t.Error("a new snapshot shares the old one's slot")
	}
}
