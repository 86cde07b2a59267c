package service

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// tracer is the process's OpenTelemetry tracer: a no-op unless the server
// installed a provider (OTEL_EXPORTER_OTLP_ENDPOINT set).
var tracer = otel.Tracer("github.com/tokenbroker/tokenbroker/service")

// startUpstreamSpan starts the span around one vendor token request
// (retries included). Only the vendor id and profile name are recorded,
// never an input of the request.
func startUpstreamSpan(ctx context.Context, r *resolved) (context.Context, trace.Span) {
	return tracer.Start(ctx, "vendor.FetchToken", trace.WithSpanKind(trace.SpanKindClient),
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
