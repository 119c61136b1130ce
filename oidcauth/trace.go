package oidcauth

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// tracerName names the spans' instrumentation scope.
const tracerName = "github.com/caddy-bff/caddy-bff/oidcauth"

// Span attributes of a provider call: its kind (metrics.Call*) and its
// outcome (ok, refused, unavailable). Never a token, a code or a URL's
// query.
const (
	attrCall    = "caddy_bff.provider.call"
	attrOutcome = "caddy_bff.provider.outcome"
	attrStatus  = "http.response.status_code"
)

// providerSpan starts the span of one provider call: a child of the
// request's span when Caddy's tracing directive is on (the span's own
// tracer provider, which Caddy's tracing module owns), a no-op otherwise.
func providerSpan(ctx context.Context, call string) (context.Context, trace.Span) {
	tp := trace.SpanFromContext(ctx).TracerProvider()
	return tp.Tracer(tracerName).Start(ctx, "oidc_auth provider "+call,
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String(attrCall, call)))
}

// endProviderSpan records the call's outcome and ends its span; status is
// the HTTP status when there was an answer.
func endProviderSpan(span trace.Span, outcome string, status int) {
	span.SetAttributes(attribute.String(attrOutcome, outcome))
	if status != 0 {
		span.SetAttributes(attribute.Int(attrStatus, status))
	}
	if outcome != "ok" {
		span.SetStatus(codes.Error, outcome)
	}
	span.End()
}

// outcomeOf classifies a call by its answer's status.
func outcomeOf(status int) string {
	switch {
	case status >= 200 && status < 300:
		return "ok"
	case status >= 400 && status < 500:
		return "refused"
	}
	return "unavailable"
}
