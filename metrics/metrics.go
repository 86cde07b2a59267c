// Package metrics holds tokenbroker's Prometheus metrics (docs/design.md, Operations):
// every name starts with "tokenbroker_", they live in their own registry
// (with the Go runtime and process collectors) and are served by Handler on
// the HTTP listener's /metrics.
//
// Metrics receives the service's events (it implements service.Observer),
// reads the shared cache's counters at each scrape (WatchStore), and counts
// requests through UnaryServerInterceptor and HTTPMiddleware.
//
// Labels are bounded and never carry a secret or a token: vendor ids come
// from the vendor registry, methods and routes from the registered
// handlers, outcomes and levels from fixed sets.
package metrics

import (
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tokenbroker/tokenbroker/internal/version"
)

const namespace = "tokenbroker"

// Bucket boundaries, in seconds.
var (
	// requestBuckets: a cache hit answers in well under a millisecond; a
	// miss waits for the vendor.
	requestBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
	// upstreamBuckets: vendor token endpoints take tens to hundreds of
	// milliseconds, and up to their timeout (10s by default) with retries.
	upstreamBuckets = []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
	// lockWaitBuckets: a waiter is woken within milliseconds of the
	// holder's answer; a dead holder delays it by at most the lease TTL
	// (2s by default) and a vendor call (10s timeout by default).
	lockWaitBuckets = []float64{.001, .005, .02, .05, .1, .25, .5, 1, 2.5, 5, 10, 15, 30}
)

// Metrics is the set of collectors. Its methods are safe for concurrent use.
type Metrics struct {
	registry *prometheus.Registry

	grpcRequests *prometheus.CounterVec
	grpcDuration *prometheus.HistogramVec
	// grpcBound caches each method's OK counter and duration observer
	// (*boundMethod by full method name): resolving label values hashes
	// them on every call, a cost the hot path does not need to pay.
	grpcBound    sync.Map
	cacheBound   sync.Map // vendor -> *[2]prometheus.Counter (miss, hit)
	httpBound    sync.Map // httpSeries -> prometheus.Counter
	httpRequests *prometheus.CounterVec

	cacheRequests    *prometheus.CounterVec
	upstreamRequests *prometheus.CounterVec
	upstreamDuration *prometheus.HistogramVec
	lockWait         *prometheus.HistogramVec
	refreshAhead     *prometheus.CounterVec
	negativeHits     *prometheus.CounterVec
	invalidations    *prometheus.CounterVec
	staleWrites      *prometheus.CounterVec
	configReloads    *prometheus.CounterVec
	panics           prometheus.Counter

	configGeneration prometheus.Gauge
}

// New returns Metrics registered in a registry of their own.
func New() *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		grpcRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "grpc_requests_total",
			Help: "gRPC calls handled (REST calls included: the gateway calls the gRPC service), by method and status code.",
		}, []string{"method", "code"}),
		grpcDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "grpc_request_duration_seconds",
			Help:    "Time to handle a gRPC call, by method.",
			Buckets: requestBuckets,
		}, []string{"method"}),
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "http_requests_total",
			Help: "HTTP requests on the REST and operations listener, by route pattern and status code.",
		}, []string{"route", "code"}),
		cacheRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "cache_requests_total",
			Help: "GetToken cache lookups by vendor and result (hit: served from a cache level; miss: fetched or waited for a fetch).",
		}, []string{"vendor", "result"}),
		upstreamRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "upstream_requests_total",
			Help: "Token requests to vendors (retries inside one request included), by vendor and outcome (ok, rejected, unavailable, throttled, bad_request, bad_response).",
		}, []string{"vendor", "outcome"}),
		upstreamDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "upstream_request_duration_seconds",
			Help:    "Time a vendor token request took, retries included, by vendor.",
			Buckets: upstreamBuckets,
		}, []string{"vendor"}),
		lockWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "lock_wait_duration_seconds",
			Help:    "Time a request waited for another replica's fetch of the same token (its count is the number of lock waits), by vendor.",
			Buckets: lockWaitBuckets,
		}, []string{"vendor"}),
		refreshAhead: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "refresh_ahead_total",
			Help: "Background refreshes of tokens that had used most of their life, by vendor.",
		}, []string{"vendor"}),
		negativeHits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "negative_cache_hits_total",
			Help: "Requests answered from the negative cache (credentials the vendor rejected moments ago), by vendor.",
		}, []string{"vendor"}),
		invalidations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "invalidations_total",
			Help: "InvalidateToken calls by vendor and result (deleted: the cached token was the one named; kept: it was not).",
		}, []string{"vendor", "result"}),
		staleWrites: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "stale_writes_total",
			Help: "Fetched tokens not stored because a later fetch lease holder had stored a newer one (this replica had lost its lease), by vendor.",
		}, []string{"vendor"}),
		configReloads: newConfigReloads(),
		panics: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "panics_total",
			Help: "Panics recovered while handling a call (gRPC or HTTP): each was answered internal error and logged with its stack, and the process kept serving.",
		}),
		configGeneration: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "config_generation",
			Help: "Generation of the configuration in use: 1 at startup, one more at each successful reload.",
		}),
	}
	// One series per replica whose labels say which build it runs, so a
	// dashboard can show a rollout's progress (Prometheus' own
	// prometheus_build_info convention).
	build := version.Get()
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "build_info",
		Help:        "Always 1; the labels say which build is running.",
		ConstLabels: prometheus.Labels{"version": build.Version, "revision": build.Revision, "goversion": build.GoVersion},
	})
	buildInfo.Set(1)
	m.configGeneration.Set(1)
	m.registry.MustRegister(m.configReloads)
	m.registry.MustRegister(
		buildInfo, m.configGeneration,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.grpcRequests, m.grpcDuration, m.httpRequests,
		m.cacheRequests, m.upstreamRequests, m.upstreamDuration,
		m.lockWait, m.refreshAhead, m.negativeHits, m.invalidations, m.staleWrites,
		m.panics,
	)
	return m
}

// Handler serves the registry in the Prometheus text format (or
// OpenMetrics when the scraper asks for it).
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{
		EnableOpenMetrics: true,
		// A scrape must not pile up behind a slow one.
		MaxRequestsInFlight: 4,
		Timeout:             5 * time.Second,
	})
}

// SetConfigGeneration reports the generation of the configuration in use
// (1 at startup; a reload that swaps the configuration sets the next).
func (m *Metrics) SetConfigGeneration(generation uint64) {
	m.configGeneration.Set(float64(generation))
}

// Panic counts a panic the server recovered from (server.Options.OnPanic).
func (m *Metrics) Panic() { m.panics.Inc() }

// Gatherer is the registry, for tests and extra exporters.
func (m *Metrics) Gatherer() prometheus.Gatherer { return m.registry }

func hitLabel(hit bool) string {
	if hit {
		return "hit"
	}
	return "miss"
}
