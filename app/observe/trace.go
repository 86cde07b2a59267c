package observe

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc/filters"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/stats"

	"github.com/tokenbroker/tokenbroker/store"
)

// tracerName is the instrumentation scope of this package's spans (the
// store calls): the import path of the package that makes them.
const tracerName = "github.com/tokenbroker/tokenbroker/app/observe"

// Tracing is OpenTelemetry export over OTLP/gRPC, on only when
// OTEL_EXPORTER_OTLP_ENDPOINT (or its traces-only variant) is set; the
// exporter reads the rest of the standard OTEL_* variables (headers, TLS,
// OTEL_SERVICE_NAME, OTEL_TRACES_SAMPLER...).
type Tracing struct {
	provider   *sdktrace.TracerProvider
	propagator propagation.TextMapPropagator
	tracer     trace.Tracer
}

// StartTracing returns nil when tracing is off. It installs the provider
// and propagator as the process's globals: the service's spans (around
// vendor fetches) use the global tracer, a no-op until then.
func StartTracing(ctx context.Context, log *slog.Logger) (*Tracing, error) {
	endpoint := os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
	if endpoint == "" {
		endpoint = os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT")
	}
	if endpoint == "" {
		return nil, nil
	}
	exporter, err := otlptracegrpc.New(ctx)
	if err != nil {
		return nil, err
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", "tokenbroker")),
		resource.WithTelemetrySDK(),
		resource.WithHost(),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win
	)
	if err != nil {
		return nil, err
	}
	t := &Tracing{
		provider:   sdktrace.NewTracerProvider(sdktrace.WithBatcher(exporter), sdktrace.WithResource(res)),
		propagator: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
	}
	t.tracer = t.provider.Tracer(tracerName)
	otel.SetTracerProvider(t.provider)
	otel.SetTextMapPropagator(t.propagator)
	log.Info("tracing on", "otlp_endpoint", endpoint)
	return t, nil
}

// serverHandler traces every RPC except health checks (probes would drown
// the traces that matter).
func (t *Tracing) ServerHandler() stats.Handler {
	return otelgrpc.NewServerHandler(
		otelgrpc.WithTracerProvider(t.provider),
		otelgrpc.WithPropagators(t.propagator),
		otelgrpc.WithFilter(filters.Not(filters.HealthCheck())),
	)
}

// shutdown flushes the spans still buffered.
func (t *Tracing) Shutdown(log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := t.provider.Shutdown(ctx); err != nil {
		log.Warn("tracing shutdown", "err", err)
	}
}

// wrapStore puts a span around every call to the shared store, so a trace
// shows where Redis time went. Keys are HMAC fingerprints, never recorded
// anyway; neither are values.
func (t *Tracing) WrapStore(st store.Store, l store.Leaser) (store.Store, store.Leaser) {
	if st != nil {
		st = &tracedStore{next: st, tracer: t.tracer}
	}
	if l != nil {
		l = &tracedLeaser{Leaser: l, tracer: t.tracer}
	}
	return st, l
}

type tracedStore struct {
	next   store.Store
	tracer trace.Tracer
}

var _ store.Store = (*tracedStore)(nil)

func (s *tracedStore) Get(ctx context.Context, key string) (store.Entry, error) {
	ctx, span := s.tracer.Start(ctx, "store.Get", trace.WithSpanKind(trace.SpanKindClient))
	e, err := s.next.Get(ctx, key)
	span.SetAttributes(attribute.Bool("tokenbroker.cache_hit", err == nil))
	endSpan(span, err, store.ErrNotFound)
	return e, err
}

func (s *tracedStore) Put(ctx context.Context, key string, e store.Entry) error {
	ctx, span := s.tracer.Start(ctx, "store.Put", trace.WithSpanKind(trace.SpanKindClient))
	err := s.next.Put(ctx, key, e)
	endSpan(span, err, nil)
	return err
}

func (s *tracedStore) CompareAndDelete(ctx context.Context, key, accessToken string) (bool, error) {
	ctx, span := s.tracer.Start(ctx, "store.CompareAndDelete", trace.WithSpanKind(trace.SpanKindClient))
	ok, err := s.next.CompareAndDelete(ctx, key, accessToken)
	span.SetAttributes(attribute.Bool("tokenbroker.deleted", ok))
	endSpan(span, err, nil)
	return ok, err
}

// tracedLeaser puts a span around TryLease (Notify and PollInterval are
// local).
type tracedLeaser struct {
	store.Leaser
	tracer trace.Tracer
}

func (l *tracedLeaser) TryLease(ctx context.Context, key string) (store.Lease, error) {
	ctx, span := l.tracer.Start(ctx, "store.TryLease", trace.WithSpanKind(trace.SpanKindClient))
	lease, err := l.Leaser.TryLease(ctx, key)
	span.SetAttributes(attribute.Bool("tokenbroker.acquired", lease != nil))
	endSpan(span, err, nil)
	return lease, err
}

// GetFresh keeps reading past the caching levels through the span.
func (s *tracedStore) GetFresh(ctx context.Context, key string) (store.Entry, error) {
	ctx, span := s.tracer.Start(ctx, "store.GetFresh", trace.WithSpanKind(trace.SpanKindClient))
	e, err := store.GetFresh(ctx, s.next, key)
	endSpan(span, err, store.ErrNotFound)
	return e, err
}

// endSpan records err (unless it is the expected one) and ends span.
func endSpan(span trace.Span, err, expected error) {
	if err != nil && (expected == nil || !errors.Is(err, expected)) {
		span.RecordError(err)
		span.SetStatus(otelcodes.Error, "store call failed")
	}
	span.End()
}

// ForwardHeaders are the trace context's HTTP headers, which the gateway
// forwards to the gRPC handler as it does x-request-id.
func (t *Tracing) ForwardHeaders() []string { return t.propagator.Fields() }
