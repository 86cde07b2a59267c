package app

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"

	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/tokenbroker/tokenbroker/app/observe"
	"github.com/tokenbroker/tokenbroker/config"
	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
	"github.com/tokenbroker/tokenbroker/metrics"
	"github.com/tokenbroker/tokenbroker/server"
	"github.com/tokenbroker/tokenbroker/service"
)

// ops is an App's operations side (docs/design.md, Operations): metrics, health and
// readiness, the access log and tracing.
type ops struct {
	log     *slog.Logger
	metrics *metrics.Metrics
	health  *health.Server
	// redisDown reports why the shared cache is unusable (nil: usable); nil
	// when the store is process-local.
	redisDown func(context.Context) error
	// tracing is nil unless OTEL_EXPORTER_OTLP_ENDPOINT is set.
	tracing *observe.Tracing
	// access is the access log policy (access_log), set again on reload.
	access *observe.AccessPolicy
}

// setGeneration reports the configuration generation in service (1 at
// startup, one more per applied reload) as tokenbroker_config_generation.
func (o *ops) setGeneration(n uint64) { o.metrics.SetConfigGeneration(n) }

var _ service.Observer = (*metrics.Metrics)(nil)

// instrument builds the operations side and hooks it into the service's
// configuration (metrics observer; spans around store calls when tracing).
// New calls it before building the service, configureOps after.
func (a *App) instrument(ctx context.Context, svcCfg *service.Config, cfg *config.Config) error {
	o := &ops{
		log:     a.log,
		metrics: metrics.New(),
		health:  health.NewServer(),
		access:  observe.NewAccessPolicy(cfg.AccessLog.HitsOneIn()),
	}
	// gRPC health says NOT_SERVING until Run: by then the config is loaded
	// and, with Redis, buildStore has made the first round trip.
	for _, name := range []string{"", tokenbrokerv1.TokenService_ServiceDesc.ServiceName} {
		o.health.SetServingStatus(name, healthpb.HealthCheckResponse_NOT_SERVING)
	}
	svcCfg.Observer = o.metrics
	if err := o.metrics.WatchJWKS(a.jwksStatus); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	if cfg.Cache.Redis != nil {
		if err := o.watchSharedCache(svcCfg.Store, svcCfg.Leases, !cfg.Cache.L1Disabled); err != nil {
			return err
		}
	}
	tr, err := observe.StartTracing(ctx, a.log)
	if err != nil {
		return fmt.Errorf("tracing: %w", err)
	}
	if tr != nil {
		o.tracing = tr
		if cfg.Cache.Redis != nil {
			svcCfg.Store, svcCfg.Leases = tr.WrapStore(svcCfg.Store, svcCfg.Leases)
		}
	}
	a.ops = o
	a.closers = append(a.closers, o.close)
	return nil
}

// configureOps adds the access log, metrics and health endpoints (docs/design.md,
// Operations) to the server options. Its interceptors and middleware come
// first, so they wrap security's: the access log sees the principal auth
// found, and the request id exists before anything can fail.
func (a *App) configureOps(sopts *server.Options, _ *config.Config, _ Options) error {
	o := a.ops
	if o == nil {
		return fmt.Errorf("operations: instrument was not called before configureOps")
	}
	sopts.Health = o.health
	sopts.OnPanic = o.metrics.Panic
	sopts.UnaryInterceptors = append(sopts.UnaryInterceptors,
		observe.AccessLog(o.log, observe.AccessLogOptions{
			Policy:  o.access,
			Gateway: server.InternalTransport,
			Calls:   o.metrics,
			Traced:  o.tracing != nil,
		}))
	// RequestIDs first so every response carries the id; the metrics
	// middleware must wrap the mux directly to see the route pattern.
	sopts.HTTPMiddleware = append(sopts.HTTPMiddleware, observe.RequestIDs, o.metrics.HTTPMiddleware)
	sopts.ForwardHeaders = append(sopts.ForwardHeaders, observe.RequestIDHeader)
	if sopts.Routes == nil {
		sopts.Routes = map[string]http.Handler{}
	}
	sopts.Routes["GET /metrics"] = o.metrics.Handler()
	sopts.Routes["GET /healthz"] = http.HandlerFunc(observe.Healthz)
	sopts.Routes["GET /readyz"] = observe.ReadyzWithDetails(o.health, o.redisDown, a.jwksDegraded)
	if o.tracing != nil {
		sopts.StatsHandlers = append(sopts.StatsHandlers, o.tracing.ServerHandler())
		// REST callers' trace context reaches the gRPC handler through the
		// gateway like x-request-id does.
		sopts.ForwardHeaders = append(sopts.ForwardHeaders, o.tracing.ForwardHeaders()...)
	}
	return nil
}

// close flushes traces.
func (o *ops) close() {
	if o.tracing != nil {
		o.tracing.Shutdown(o.log)
	}
}
