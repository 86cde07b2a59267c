package docs

import (
	"maps"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/tokenbroker/tokenbroker/metrics"
)

// metricDrivers gives every exported method of *metrics.Metrics a call
// that makes the series it feeds exist (a labelled family has no sample,
// and is not gathered, until a label value is used). A new method fails
// TestDesignMetricTable until it is listed here, so a new metric cannot
// escape the comparison.
var metricDrivers = map[string]func(*metrics.Metrics){
	"CacheResult":  func(m *metrics.Metrics) { m.CacheResult("oauth2", true) },
	"Upstream":     func(m *metrics.Metrics) { m.Upstream("oauth2", "ok", time.Millisecond) },
	"LeaseWait":    func(m *metrics.Metrics) { m.LeaseWait("oauth2", time.Millisecond) },
	"RefreshAhead": func(m *metrics.Metrics) { m.RefreshAhead("oauth2") },
	"NegativeHit":  func(m *metrics.Metrics) { m.NegativeHit("oauth2") },
	"Invalidated":  func(m *metrics.Metrics) { m.Invalidated("oauth2", true) },
	"StaleWrite":   func(m *metrics.Metrics) { m.StaleWrite("oauth2") },
	"Panic":        func(m *metrics.Metrics) { m.Panic() },
	"ConfigReload": func(m *metrics.Metrics) { m.ConfigReload("ok") },
	"SetConfigGeneration": func(m *metrics.Metrics) {
		m.SetConfigGeneration(2)
	},
	"ObserveCall": func(m *metrics.Metrics) {
		m.ObserveCall("/tokenbroker.v1.TokenService/GetToken", codes.Unavailable, time.Millisecond)
	},
	"HTTPMiddleware": func(m *metrics.Metrics) {
		h := m.HTTPMiddleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/healthz", nil))
	},
	"WatchCredentialEvents": func(m *metrics.Metrics) {
		_ = m.WatchCredentialEvents(func() metrics.EventStats { return metrics.EventStats{} })
	},
	// Driven by TestDesignMetricTable itself: the store collector, with
	// and without L1 (each shows its own series).
	"WatchStore": nil,
	"WatchJWKS": func(m *metrics.Metrics) {
		_ = m.WatchJWKS(func() []metrics.JWKSStatus { return []metrics.JWKSStatus{{Issuer: "https://issuer.example"}} })
	},
	// Serve the registry; they feed no series.
	"Handler":  nil,
	"Gatherer": nil,
}

// exportedMetrics builds the registry as app does (metrics.New,
// then WatchStore for a Redis store), drives every series into existence
// and returns each tokenbroker_ family's label names.
func exportedMetrics(t *testing.T) map[string][]string {
	t.Helper()
	typ := reflect.TypeFor[*metrics.Metrics]()
	for i := range typ.NumMethod() {
		name := typ.Method(i).Name
		if _, ok := metricDrivers[name]; !ok {
			t.Errorf("(*metrics.Metrics).%s is not in docs/metrics_test.go's metricDrivers: add a call that makes its series exist (or nil if it feeds none), so the Operations table is checked against it", name)
		}
	}
	families := map[string][]string{}
	// A store with L1 and one without export different series.
	for _, l1 := range []bool{true, false} {
		m := metrics.New()
		for _, drive := range metricDrivers {
			if drive != nil {
				drive(m)
			}
		}
		if err := m.WatchStore(func() metrics.StoreStats { return metrics.StoreStats{L1Enabled: l1} }); err != nil {
			t.Fatal(err)
		}
		got, err := m.Gatherer().Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range got {
			if !strings.HasPrefix(f.GetName(), "tokenbroker_") {
				continue
			}
			labels := map[string]bool{}
			for _, s := range f.GetMetric() {
				for _, l := range s.GetLabel() {
					labels[l.GetName()] = true
				}
			}
			families[f.GetName()] = slices.Sorted(maps.Keys(labels))
		}
	}
	return families
}

// TestDesignMetricTable: the metric table of the Operations section lists
// every tokenbroker_ metric the registry exports, with its labels, and
// nothing else.
func TestDesignMetricTable(t *testing.T) {
	t.Parallel()
	exported := exportedMetrics(t)
	where := designDoc + ", Operations, the metric table"
	tb := tableWith(t, where, section(t, "Operations"), "metric")
	documented := map[string][]string{}
	for _, row := range tb.rows {
		labels := codeSpans(row[1])
		slices.Sort(labels)
		for _, name := range codeSpans(row[0]) {
			name = "tokenbroker_" + strings.TrimPrefix(name, "tokenbroker_")
			if _, dup := documented[name]; dup {
				t.Errorf("%s lists `%s` twice", where, name)
			}
			documented[name] = labels
		}
	}
	for _, name := range slices.Sorted(maps.Keys(exported)) {
		labels, ok := documented[name]
		if !ok {
			t.Errorf("%s lacks `%s` (labels %s), which the registry exports: add a row", where, strings.TrimPrefix(name, "tokenbroker_"), labelList(exported[name]))
			continue
		}
		if !slices.Equal(labels, exported[name]) {
			t.Errorf("%s gives `%s` the labels %s; the registry exports it with %s", where, strings.TrimPrefix(name, "tokenbroker_"), labelList(labels), labelList(exported[name]))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(documented)) {
		if _, ok := exported[name]; !ok {
			t.Errorf("%s lists `%s`, which the registry does not export: remove it, or fix its name", where, strings.TrimPrefix(name, "tokenbroker_"))
		}
	}
}

func labelList(labels []string) string {
	if len(labels) == 0 {
		return "none"
	}
	return strings.Join(labels, ", ")
}
