package metrics

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"

	"github.com/tokenbroker/tokenbroker/internal/version"
)

func TestEventsMoveTheirCounters(t *testing.T) {
	t.Parallel()
	m := New()
	m.CacheResult("smartdocumentor", true)
	m.CacheResult("smartdocumentor", true)
	m.CacheResult("smartdocumentor", false)
	m.Upstream("smartdocumentor", "ok", 120*time.Millisecond)
	m.Upstream("smartdocumentor", "unavailable", 3*time.Second)
	m.LeaseWait("saasu", 40*time.Millisecond)
	m.RefreshAhead("saasu")
	m.NegativeHit("abbyy_vantage")
	m.Invalidated("saasu", true)
	m.Invalidated("saasu", false)

	tests := []struct {
		name string
		got  float64
		want float64
	}{
		{"cache hits", testutil.ToFloat64(m.cacheRequests.WithLabelValues("smartdocumentor", "hit")), 2},
		{"cache misses", testutil.ToFloat64(m.cacheRequests.WithLabelValues("smartdocumentor", "miss")), 1},
		{"upstream ok", testutil.ToFloat64(m.upstreamRequests.WithLabelValues("smartdocumentor", "ok")), 1},
		{"upstream errors", testutil.ToFloat64(m.upstreamRequests.WithLabelValues("smartdocumentor", "unavailable")), 1},
		{"refresh ahead", testutil.ToFloat64(m.refreshAhead.WithLabelValues("saasu")), 1},
		{"negative hits", testutil.ToFloat64(m.negativeHits.WithLabelValues("abbyy_vantage")), 1},
		{"invalidations deleted", testutil.ToFloat64(m.invalidations.WithLabelValues("saasu", "deleted")), 1},
		{"invalidations kept", testutil.ToFloat64(m.invalidations.WithLabelValues("saasu", "kept")), 1},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("%s = %v, want %v", tc.name, tc.got, tc.want)
		}
	}
	if n := testutil.CollectAndCount(m.upstreamDuration); n != 1 {
		t.Errorf("upstream latency series = %d, want 1 (by vendor only)", n)
	}
	if n := testutil.CollectAndCount(m.lockWait); n != 1 {
		t.Errorf("lease wait series = %d, want 1", n)
	}
}

func TestWatchStoreReportsTheStoresCounters(t *testing.T) {
	t.Parallel()
	m := New()
	var mu sync.Mutex
	stats := StoreStats{L1Enabled: true, L1Hits: 7, L1Misses: 3, L1Fallbacks: 1, L1Entries: 2,
		RedisErrors: 4, RedisSkipped: 9, BreakerOpen: true, BreakerOpens: 1, SealOpenFailures: 5,
		Invalidations: 11, PublishErrors: 2}
	if err := m.WatchStore(func() StoreStats { mu.Lock(); defer mu.Unlock(); return stats }); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP tokenbroker_cache_level_lookups_total Reads of a cache level (l1: in-process, in front of Redis) by result (hit or miss).
# TYPE tokenbroker_cache_level_lookups_total counter
tokenbroker_cache_level_lookups_total{level="l1",result="hit"} 7
tokenbroker_cache_level_lookups_total{level="l1",result="miss"} 3
# HELP tokenbroker_cache_l1_invalidations_received_total Entries dropped from the in-process level on another replica's invalidation message.
# TYPE tokenbroker_cache_l1_invalidations_received_total counter
tokenbroker_cache_l1_invalidations_received_total 11
# HELP tokenbroker_redis_breaker_open 1 while the Redis circuit breaker is open (Redis considered down, the broker degraded), else 0.
# TYPE tokenbroker_redis_breaker_open gauge
tokenbroker_redis_breaker_open 1
# HELP tokenbroker_redis_errors_total Redis commands that failed (timeouts, connection errors, error replies).
# TYPE tokenbroker_redis_errors_total counter
tokenbroker_redis_errors_total 4
# HELP tokenbroker_redis_invalidation_publish_errors_total Invalidation messages this replica could not send; the other replicas' in-process levels catch up at their next revalidation (within seconds).
# TYPE tokenbroker_redis_invalidation_publish_errors_total counter
tokenbroker_redis_invalidation_publish_errors_total 2
# HELP tokenbroker_seal_open_failures_total Sealed cache values that failed to open (unknown key id, wrong key, tampering); each is treated as a miss.
# TYPE tokenbroker_seal_open_failures_total counter
tokenbroker_seal_open_failures_total 5
`
	names := []string{"tokenbroker_cache_level_lookups_total", "tokenbroker_cache_l1_invalidations_received_total", "tokenbroker_redis_breaker_open",
		"tokenbroker_redis_errors_total", "tokenbroker_redis_invalidation_publish_errors_total", "tokenbroker_seal_open_failures_total"}
	if err := testutil.GatherAndCompare(m.Gatherer(), strings.NewReader(want), names...); err != nil {
		t.Fatal(err)
	}

	// Each scrape reads the store again; without L1 its series go away.
	mu.Lock()
	stats = StoreStats{RedisErrors: 6}
	mu.Unlock()
	if n, _ := testutil.GatherAndCount(m.Gatherer(), "tokenbroker_cache_level_lookups_total"); n != 0 {
		t.Errorf("L1 series without L1 = %d, want 0", n)
	}
	if n, _ := testutil.GatherAndCount(m.Gatherer(), "tokenbroker_redis_breaker_open"); n != 1 {
		t.Errorf("breaker series = %d, want 1", n)
	}
}

func TestObserveCallCountsMethodAndCode(t *testing.T) {
	t.Parallel()
	m := New()
	const method = "/tokenbroker.v1.TokenService/GetToken"
	for _, code := range []codes.Code{codes.OK, codes.OK, codes.Unavailable} {
		m.ObserveCall(method, code, time.Millisecond)
	}
	if got := testutil.ToFloat64(m.grpcRequests.WithLabelValues("tokenbroker.v1.TokenService/GetToken", "OK")); got != 2 {
		t.Errorf("OK calls = %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.grpcRequests.WithLabelValues("tokenbroker.v1.TokenService/GetToken", "Unavailable")); got != 1 {
		t.Errorf("Unavailable calls = %v, want 1", got)
	}
}

func TestHTTPMiddlewareLabelsByRoutePattern(t *testing.T) {
	t.Parallel()
	m := New()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /items/{id}", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) })
	h := m.HTTPMiddleware(mux)
	for _, path := range []string{"/items/1", "/items/2", "/elsewhere"} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, path, nil))
	}
	if got := testutil.ToFloat64(m.httpRequests.WithLabelValues("GET /items/{id}", "418")); got != 2 {
		t.Errorf("GET /items/{id} 418 = %v, want 2 (one series for every id)", got)
	}
	if got := testutil.ToFloat64(m.httpRequests.WithLabelValues("none", "404")); got != 1 {
		t.Errorf("unmatched = %v, want 1", got)
	}
}

func TestHandlerServesOwnRegistryWithRuntimeCollectors(t *testing.T) {
	t.Parallel()
	m := New()
	m.CacheResult("oauth2", true)
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	text := string(body)
	for _, want := range []string{
		`tokenbroker_cache_requests_total{result="hit",vendor="oauth2"} 1`,
		"go_goroutines",
		"process_start_time_seconds",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// Every metric of ours carries the prefix.
	mfs, err := m.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		name := mf.GetName()
		if !strings.HasPrefix(name, "tokenbroker_") && !strings.HasPrefix(name, "go_") && !strings.HasPrefix(name, "process_") {
			t.Errorf("metric %s has no tokenbroker_ prefix", name)
		}
	}
}

func TestMetricNamesPassLint(t *testing.T) {
	t.Parallel()
	m := New()
	// Touch every vector so the linter sees a series of each.
	m.CacheResult("v", true)
	m.Upstream("v", "ok", time.Millisecond)
	m.LeaseWait("v", time.Millisecond)
	m.RefreshAhead("v")
	m.NegativeHit("v")
	m.Invalidated("v", true)
	if err := m.WatchStore(func() StoreStats { return StoreStats{L1Enabled: true} }); err != nil {
		t.Fatal(err)
	}
	problems, err := testutil.GatherAndLint(m.Gatherer())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "tokenbroker_") {
			t.Errorf("%s: %s", p.Metric, p.Text)
		}
	}
}

func TestBuildInfoAndConfigGeneration(t *testing.T) {
	t.Parallel()
	m := New()
	build := version.Get()
	want := fmt.Sprintf(`
# HELP tokenbroker_build_info Always 1; the labels say which build is running.
# TYPE tokenbroker_build_info gauge
tokenbroker_build_info{goversion=%q,revision=%q,version=%q} 1
# HELP tokenbroker_config_generation Generation of the configuration in use: 1 at startup, one more at each successful reload.
# TYPE tokenbroker_config_generation gauge
tokenbroker_config_generation 1
`, build.GoVersion, build.Revision, build.Version)
	if err := testutil.GatherAndCompare(m.Gatherer(), strings.NewReader(want), "tokenbroker_build_info", "tokenbroker_config_generation"); err != nil {
		t.Error(err)
	}
	m.SetConfigGeneration(2)
	if got := testutil.ToFloat64(m.configGeneration); got != 2 {
		t.Errorf("config generation after a reload = %v, want 2", got)
	}
}
