/*
Copyright 2026 The infergate Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package gateway

import (
	"context"
	"net/http"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.41.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/infergate/infergate/internal/routing"
	"github.com/infergate/infergate/internal/tracing"
)

// Traces, when Options.TracerProvider is set: a server span per proxied request, continuing
// the client's W3C trace context, and a client span per upstream attempt under it (a retry is
// a sibling attempt), whose context goes upstream in traceparent. Attributes follow the
// OpenTelemetry GenAI semantic conventions, plus the request's workspace, entity, provider and
// request ID. Off, none of this runs.

// Attributes of infergate's own.
const (
	attrWorkspace = attribute.Key("infergate.workspace")
	attrEntity    = attribute.Key("infergate.entity")
	attrProvider  = attribute.Key("infergate.provider")
	attrTarget    = attribute.Key("infergate.target")
	attrRequestID = attribute.Key("infergate.request_id")
	attrAttempt   = attribute.Key("infergate.attempt")
)

// operation is the GenAI operation of an OpenAI route, or "" for another path.
func operation(trailing string) string {
	switch strings.TrimPrefix(trailing, "v1/") {
	case "chat/completions", "responses":
		return semconv.GenAIOperationNameChat.Value.AsString()
	case "completions":
		return semconv.GenAIOperationNameTextCompletion.Value.AsString()
	case "embeddings":
		return semconv.GenAIOperationNameEmbeddings.Value.AsString()
	}
	return ""
}

// startRequestSpan starts the span of a proxied request, under the trace context the client
// sent, and returns the context that carries it.
func (g *Gateway) startRequestSpan(pr *proxyRequest, r *http.Request) context.Context {
	ctx := tracing.Propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	ctx, pr.span = g.tracer.Start(ctx, r.Method+" "+pr.rt.kind.String(), trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(
		semconv.HTTPRequestMethodKey.String(r.Method), semconv.URLPath(r.URL.Path),
		attrWorkspace.String(pr.rt.workspace), attrRequestID.String(pr.requestID)))
	return ctx
}

// nameRequestSpan names the request's span once its entity is known: "chat team/llama".
func (pr *proxyRequest) nameRequestSpan() {
	if pr.span == nil || pr.entity == nil {
		return
	}
	pr.span.SetAttributes(attrEntity.String(pr.entity.Name), semconv.GenAIRequestModel(pr.entity.ID),
		semconv.GenAIProviderNameOpenAI)
	if op := operation(pr.rt.trailing); op != "" {
		pr.span.SetName(op + " " + pr.entity.ID)
		pr.span.SetAttributes(semconv.GenAIOperationNameKey.String(op))
	}
}

// startAttempt starts the span of an upstream attempt and sends its context upstream.
func (g *Gateway) startAttempt(pr *proxyRequest, req *http.Request, p *routing.Provider, served []byte) {
	op := operation(pr.rt.trailing)
	model := string(served)
	if len(served) > 1 {
		model, _ = strconv.Unquote(model)
	}
	name := op + " " + model
	if op == "" || model == "" {
		name = req.Method + " " + p.ID
	}
	attrs := []attribute.KeyValue{attrProvider.String(p.ID), attrAttempt.Int(pr.attempts),
		semconv.ServerAddress(p.URL.Hostname()), semconv.GenAIProviderNameOpenAI}
	if pr.target != nil {
		attrs = append(attrs, attrTarget.String(pr.target.Entity.ID))
	}
	if port, err := strconv.Atoi(p.URL.Port()); err == nil {
		attrs = append(attrs, semconv.ServerPort(port))
	}
	if model != "" {
		attrs = append(attrs, semconv.GenAIRequestModel(model))
	}
	if op != "" {
		attrs = append(attrs, semconv.GenAIOperationNameKey.String(op))
	}
	var ctx context.Context
	ctx, pr.attemptSpan = g.tracer.Start(pr.ctx, name, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	tracing.Propagator.Inject(ctx, propagation.HeaderCarrier(req.Header))
}

// endAttempt ends the current attempt's span: failed for reason, or "" when it answered.
func (pr *proxyRequest) endAttempt(reason string, status int) {
	s := pr.attemptSpan
	if s == nil {
		return
	}
	pr.attemptSpan = nil
	if status > 0 {
		s.SetAttributes(semconv.HTTPResponseStatusCode(status))
	}
	if reason != "" {
		s.SetAttributes(semconv.ErrorTypeKey.String(reason))
		s.SetStatus(codes.Error, reason)
	}
	pr.endWithUsage(s, reason == "", false)
}

// endWithUsage adds what the response said (its model, as the client or the upstream named
// it, and its tokens) and ends s.
func (pr *proxyRequest) endWithUsage(s trace.Span, answered, client bool) {
	if answered && pr.backend != nil {
		model := pr.backend.ServedModel
		if client {
			model = pr.entity.ID
		}
		s.SetAttributes(semconv.GenAIResponseModel(model))
	}
	if pr.usage.seen {
		s.SetAttributes(semconv.GenAIUsageInputTokens(int(pr.usage.prompt)), semconv.GenAIUsageOutputTokens(int(pr.usage.completion)))
	}
	if !pr.firstEvent.IsZero() {
		s.AddEvent("first token", trace.WithTimestamp(pr.firstEvent))
	}
	s.End()
}

// endRequestSpan ends the request's span with the status the client got.
func (pr *proxyRequest) endRequestSpan(status int) {
	s := pr.span
	pr.span = nil
	s.SetAttributes(semconv.HTTPResponseStatusCode(status))
	if status >= 500 {
		s.SetStatus(codes.Error, http.StatusText(status))
	}
	pr.endWithUsage(s, status < 400, true)
}
