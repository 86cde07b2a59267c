package metrics

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
)

// ObserveCall counts one finished unary call of fullMethod (as gRPC names
// it: "/package.Service/Method", a registered method only, which bounds
// the label) by its code, and observes how long it took. The server's
// access log interceptor calls it for every call, with the duration its
// line states (observe.AccessLogOptions.Calls).
func (m *Metrics) ObserveCall(fullMethod string, code codes.Code, elapsed time.Duration) {
	b := m.bound(fullMethod)
	if code == codes.OK {
		b.ok.Inc()
	} else {
		m.grpcRequests.WithLabelValues(b.method, code.String()).Inc()
	}
	b.duration.Observe(elapsed.Seconds())
}

// boundMethod is one method's pre-resolved series.
type boundMethod struct {
	method   string
	ok       prometheus.Counter
	duration prometheus.Observer
}

// bound returns fullMethod's series, resolving them once. Only registered
// methods reach an interceptor, so the map is bounded.
func (m *Metrics) bound(fullMethod string) *boundMethod {
	if b, ok := m.grpcBound.Load(fullMethod); ok {
		return b.(*boundMethod)
	}
	method := strings.TrimPrefix(fullMethod, "/")
	b := &boundMethod{
		method:   method,
		ok:       m.grpcRequests.WithLabelValues(method, codes.OK.String()),
		duration: m.grpcDuration.WithLabelValues(method),
	}
	actual, _ := m.grpcBound.LoadOrStore(fullMethod, b)
	return actual.(*boundMethod)
}

// HTTPMiddleware counts HTTP requests by the route pattern that matched
// (an http.ServeMux pattern such as "GET /metrics" or "/v1/") and status
// code. It must wrap the ServeMux directly, so it sees the pattern the mux
// records on the request; requests no route matched count as "none".
func (m *Metrics) HTTPMiddleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(sw, r)
		route := r.Pattern
		if route == "" {
			route = "none"
		}
		m.httpCounter(route, sw.status).Inc()
	})
}

// httpSeries identifies one HTTP counter: mux patterns and status codes
// are both few, so the map of resolved counters is bounded.
type httpSeries struct {
	route  string
	status int
}

// httpCounter returns the counter of route and status, resolving it once.
func (m *Metrics) httpCounter(route string, status int) prometheus.Counter {
	k := httpSeries{route, status}
	if c, ok := m.httpBound.Load(k); ok {
		return c.(prometheus.Counter)
	}
	c, _ := m.httpBound.LoadOrStore(k, m.httpRequests.WithLabelValues(route, strconv.Itoa(status)))
	return c.(prometheus.Counter)
}

// statusWriter remembers the status code written.
type statusWriter struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wroteHeader && code >= 200 {
		w.status, w.wroteHeader = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wroteHeader = true
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer (Flush,
// deadlines).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
