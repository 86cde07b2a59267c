package observe

import (
	"context"
	"io"
	"net/http"
	"time"

	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// readyRedisTimeout bounds the Redis round trip of one /readyz, which
// must answer within 1 s (docs/design.md, Operations).
const readyRedisTimeout = 800 * time.Millisecond

// Healthz says the process is alive: it answers whatever Redis or the
// vendors do, so a liveness probe never restarts a replica for an outage
// elsewhere.
func Healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = io.WriteString(w, "ok\n")
}

// Readyz says whether to send this replica traffic. It follows gRPC health
// (503 while starting or draining) and, when serving, reports a Redis outage
// as 200 "degraded": the broker still answers from its in-process cache and
// the vendors, so taking every replica out of rotation would turn a cache
// outage into a full one.
// redisDown reports why the shared cache is unusable (nil: usable, or no
// shared cache).
func Readyz(hs *health.Server, redisDown func(context.Context) error) http.HandlerFunc {
	return ReadyzWithDetails(hs, redisDown, nil)
}

// ReadyzWithDetails is Readyz that also reports, as 200 "degraded" lines,
// what details returns: conditions that leave the broker serving (a JWT
// issuer's keys that could not be refreshed: the last good ones verify).
func ReadyzWithDetails(hs *health.Server, redisDown func(context.Context) error, details func() []string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { readyz(w, r, hs, redisDown, details) }
}

func readyz(w http.ResponseWriter, r *http.Request, hs *health.Server, redisDown func(context.Context) error, details func() []string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	resp, err := hs.Check(r.Context(), &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, "not ready: starting or shutting down\n")
		return
	}
	var degraded []string
	if redisDown != nil {
		ctx, cancel := context.WithTimeout(r.Context(), readyRedisTimeout)
		defer cancel()
		if err := redisDown(ctx); err != nil {
			degraded = append(degraded, "redis unreachable; serving from the in-process cache and the vendors")
		}
	}
	if details != nil {
		degraded = append(degraded, details()...)
	}
	if len(degraded) == 0 {
		_, _ = io.WriteString(w, "ready\n")
		return
	}
	for _, d := range degraded {
		_, _ = io.WriteString(w, "degraded: "+d+"\n")
	}
}
