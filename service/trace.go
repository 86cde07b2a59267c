package service

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// tracerName names this package's spans.
const tracerName = "github.com/tokenbroker/tokenbroker/service"

// startUpstreamSpan starts the span around one vendor token request
// (retries included). Only the vendor id and profile name are recorded,
// never an input of the request.
//
// The tracer comes from the process's provider at each call (a no-op
// unless the server installed one, OTEL_EXPORTER_OTLP_ENDPOINT set), not
// once at package init: otel's global delegates only to the first provider
// ever set, so a tracer held from then on would keep exporting to a
// provider a later server (a test in the same process) has shut down.
// Vendor fetches are rare next to cache hits; the lookup is cheap.
func startUpstreamSpan(ctx context.Context, r *resolved) (context.Context, trace.Span) {
	return otel.Tracer(tracerName).Start(ctx, "vendor.FetchToken", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("tokenbroker.vendor", r.vendor), attribute.String("tokenbroker.profile", r.profile)))
}

// endUpstreamSpan records the outcome ("ok" or a vendors.Kind) and ends
// the span.
func endUpstreamSpan(span trace.Span, outcome string) {
	span.SetAttributes(attribute.String("tokenbroker.outcome", outcome))
	if outcome != "ok" {
		span.SetStatus(codes.Error, outcome)
	}
	span.End()
}
