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

package gateway_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/infergate/infergate/internal/gateway"
	"github.com/infergate/infergate/internal/routing"
	"github.com/infergate/infergate/internal/simulator"
)

// attrs returns a span's attributes by key.
func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}

// A stream retried on another provider, under a client's trace: one server span continuing
// the client's trace, two attempt spans under it (the failed one marked so), GenAI attributes,
// and the trace context of the attempt that answered sent upstream.
func TestTraces(t *testing.T) {
	busy := httpServer(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })
	up := newUpstream(t, simulator.Options{Name: "up", Models: []string{served}, Chunks: 3})
	llama := entity("team", "llama", backend("team", "busy", served), backend("team", "up", served))
	llama.Balancing = routing.Failover
	recorder := tracetest.NewSpanRecorder()
	g := newGateway(t, routing.Spec{
		Providers: []routing.ProviderSpec{provider("team", "busy", busy), provider("team", "up", up.srv.URL)},
		Entities:  []routing.EntitySpec{llama},
	}, gateway.Options{TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))})

	const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	var resp *http.Response
	stream := g.client("team").Chat.Completions.NewStreaming(ctxTimeout(t, 30*time.Second), openai.ChatCompletionNewParams{
		Model: "llama", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
		StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
	}, option.WithHeader("traceparent", traceparent), option.WithResponseInto(&resp))
	for stream.Next() {
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}

	var spans []sdktrace.ReadOnlySpan
	for deadline := time.Now().Add(5 * time.Second); len(spans) < 3 && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		spans = recorder.Ended()
	}
	if len(spans) != 3 {
		t.Fatalf("%d spans ended, want the request's and two attempts'", len(spans))
	}
	var server sdktrace.ReadOnlySpan
	var attempts []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.SpanKind() == trace.SpanKindServer {
			server = s
		} else {
			attempts = append(attempts, s)
		}
	}
	if server == nil || len(attempts) != 2 {
		t.Fatalf("spans %v", spans)
	}
	if server.SpanContext().TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || server.Parent().SpanID().String() != "00f067aa0ba902b7" {
		t.Errorf("the request's span does not continue the client's trace: trace %s, parent %s", server.SpanContext().TraceID(), server.Parent().SpanID())
	}
	a := attrs(server)
	if server.Name() != "chat team/llama" || a["gen_ai.operation.name"].AsString() != "chat" || a["gen_ai.request.model"].AsString() != "team/llama" ||
		a["gen_ai.response.model"].AsString() != "team/llama" || a["gen_ai.provider.name"].AsString() != "openai" ||
		a["gen_ai.usage.output_tokens"].AsInt64() != 3 || a["gen_ai.usage.input_tokens"].AsInt64() == 0 ||
		a["infergate.workspace"].AsString() != "team" || a["infergate.entity"].AsString() != "llama" ||
		a["infergate.request_id"].AsString() != resp.Header.Get("X-Request-Id") || a["http.response.status_code"].AsInt64() != 200 {
		t.Errorf("request span %q: %v", server.Name(), a)
	}
	for i, s := range attempts {
		a := attrs(s)
		if s.Parent().SpanID() != server.SpanContext().SpanID() || s.Name() != "chat "+served || a["gen_ai.request.model"].AsString() != served ||
			a["infergate.attempt"].AsInt64() != int64(i+1) {
			t.Errorf("attempt %d: %q parent %s, %v", i+1, s.Name(), s.Parent().SpanID(), a)
		}
	}
	if failed := attempts[0]; failed.Status().Code != codes.Error || attrs(failed)["infergate.provider"].AsString() != "team/busy" ||
		attrs(failed)["http.response.status_code"].AsInt64() != 503 || attrs(failed)["error.type"].AsString() != "503" {
		t.Errorf("the failed attempt: %v %v", failed.Status(), attrs(failed))
	}
	answered := attempts[1]
	if a := attrs(answered); answered.Status().Code == codes.Error || a["infergate.provider"].AsString() != "team/up" ||
		a["gen_ai.response.model"].AsString() != served || a["gen_ai.usage.output_tokens"].AsInt64() != 3 || len(answered.Events()) != 1 {
		t.Errorf("the attempt that answered: %v %v %v", answered.Status(), a, answered.Events())
	}
	want := "00-4bf92f3577b34da6a3ce929d0e0e4736-" + answered.SpanContext().SpanID().String() + "-01"
	if got := up.lastRequest(t).Header.Get("traceparent"); got != want {
		t.Errorf("the upstream got traceparent %q, want %q", got, want)
	}
}

// Without a tracer provider, the client's traceparent passes through untouched.
func TestNoTracesPassTraceparentThrough(t *testing.T) {
	up := newUpstream(t, simulator.Options{Name: "up", Models: []string{served}})
	g := newGateway(t, routing.Spec{
		Providers: []routing.ProviderSpec{provider("team", "up", up.srv.URL)},
		Entities:  []routing.EntitySpec{entity("team", "llama", backend("team", "up", served))},
	}, gateway.Options{})
	const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	if _, err := g.client("team").Chat.Completions.New(ctxTimeout(t, 10*time.Second), chatParams("llama"), option.WithHeader("traceparent", traceparent)); err != nil {
		t.Fatal(err)
	}
	if got := up.lastRequest(t).Header.Get("traceparent"); got != traceparent {
		t.Errorf("the upstream got traceparent %q", got)
	}
}
