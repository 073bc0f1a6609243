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
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/infergate/infergate/internal/access"
	"github.com/infergate/infergate/internal/gateway"
	"github.com/infergate/infergate/internal/quota"
	"github.com/infergate/infergate/internal/redistest"
	"github.com/infergate/infergate/internal/routing"
	"github.com/infergate/infergate/internal/simulator"
)

// The same chat request straight to the simulator and through the gateway, in one run:
// compare the two (allocations and time per request include the client and the simulator,
// which are the same on both sides).
//
//	go test -run XXX -bench Chat -benchmem ./internal/gateway/
func BenchmarkDirectChat(b *testing.B) {
	up := simulatorServer(b)
	benchmarkPost(b, up+"/v1/chat/completions", `{"model":"`+served+`","messages":[{"role":"user","content":"Say hello"}]}`)
}

func BenchmarkGatewayChat(b *testing.B) {
	up := simulatorServer(b)
	g := benchGateway(b, up, gateway.Options{})
	benchmarkPost(b, g+gateway.Prefix+"team/openai/-/v1/chat/completions", `{"model":"team/llama","messages":[{"role":"user","content":"Say hello"}]}`)
}

// BenchmarkGatewayChatVirtual is BenchmarkGatewayChat through a virtual model whose one
// target is the entity the other benchmarks call: the cost of planning targets.
func BenchmarkGatewayChatVirtual(b *testing.B) {
	up := simulatorServer(b)
	g := benchGateway(b, up, gateway.Options{})
	benchmarkPost(b, g+gateway.Prefix+"team/openai/-/v1/chat/completions", `{"model":"team/chat","messages":[{"role":"user","content":"Say hello"}]}`)
}

// BenchmarkGatewayChatBudget is BenchmarkGatewayChat under an InferenceBudget of a request
// and a token limit that never refuses, counted in process; BenchmarkGatewayChatBudgetRedis
// counts in a real redis-server on loopback: compare them with BenchmarkGatewayChat.
func BenchmarkGatewayChatBudget(b *testing.B) {
	benchmarkBudget(b, nil)
}

func BenchmarkGatewayChatBudgetRedis(b *testing.B) {
	srv := redistest.Start(b)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr, PoolSize: 64})
	b.Cleanup(func() { client.Close() })
	benchmarkBudget(b, &quota.Redis{Client: client})
}

func benchmarkBudget(b *testing.B, store quota.Store) {
	l, err := quota.NewLimiter(quota.LimiterOptions{Store: store})
	if err != nil {
		b.Fatal(err)
	}
	budget := &quota.Budget{Workspace: "team", Name: "b", ID: "team/b", Input: true, Output: true, Zone: time.UTC, Limits: []quota.Limit{
		{Name: "requestsPerMinute", Window: quota.Minute, Max: 1 << 40},
		{Name: "tokensPerMinute", Window: quota.Minute, Max: 1 << 50, Tokens: true},
	}}
	up := simulatorServer(b)
	g := benchGateway(b, up, gateway.Options{Limiter: l}, budget)
	benchmarkPost(b, g+gateway.Prefix+"team/openai/-/v1/chat/completions", `{"model":"team/llama","max_tokens":64,"messages":[{"role":"user","content":"Say hello"}]}`)
}

// BenchmarkGatewayChatQueue is BenchmarkGatewayChat with the provider's capacity known and
// free: every request takes the queue's path (the pool's room from the provider's report, the
// admission, its charge and release) and none waits. Compare it with BenchmarkGatewayChat.
func BenchmarkGatewayChatQueue(b *testing.B) {
	up := simulatorServer(b)
	store := routing.NewStore()
	table, _ := routing.New(routing.Spec{
		Providers: []routing.ProviderSpec{{Workspace: "team", Name: "nim", BaseURL: up, Ready: true, AuthHeader: "Authorization", AuthValue: "Bearer k",
			Metrics: &routing.MetricsSpec{URL: up + "/metrics", Interval: time.Hour}}},
		Entities: []routing.EntitySpec{{Workspace: "team", Name: "llama", Backends: []routing.BackendSpec{{Workspace: "team", Name: "nim", ServedModel: served}}}},
	}, nil)
	store.Swap(table)
	p, _ := table.Provider("team", "nim")
	p.Health.Report(time.Now(), routing.EngineReport{MaxRunning: 1 << 20}) // no scraper: one report, fresh for hours
	g, err := gateway.New(gateway.Options{Store: store, AllowLocalUpstreams: true})
	if err != nil {
		b.Fatal(err)
	}
	srv := newHTTPTestServer(g)
	b.Cleanup(srv.Close)
	benchmarkPost(b, srv.URL+gateway.Prefix+"team/openai/-/v1/chat/completions", `{"model":"team/llama","messages":[{"role":"user","content":"Say hello"}]}`)
}

// BenchmarkGatewayChatAuth is BenchmarkGatewayChat with --gateway-auth=kubernetes against a
// real API server, the token's review and the request's decision cached: compare the two.
func BenchmarkGatewayChatAuth(b *testing.B) {
	c := startCluster(b)
	token := c.serviceAccount("default", "caller")
	c.run(`apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: model-user}
rules:
- apiGroups: [inference.infergate.dev]
  resources: [modelentities/proxy]
  verbs: [create]
`, "apply", "-f", "-")
	c.run("", "create", "namespace", "team")
	c.run("", "create", "rolebinding", "caller", "-n", "team", "--clusterrole", "model-user", "--serviceaccount", "default:caller")
	checker, err := access.New(c.env.Config, access.Options{})
	if err != nil {
		b.Fatal(err)
	}
	up := simulatorServer(b)
	g := benchGateway(b, up, gateway.Options{Access: checker})
	benchmarkPost(b, g+gateway.Prefix+"team/openai/-/v1/chat/completions", `{"model":"team/llama","messages":[{"role":"user","content":"Say hello"}]}`,
		"Bearer "+token)
}

func BenchmarkDirectChatStream(b *testing.B) {
	up := simulatorServer(b)
	benchmarkPost(b, up+"/v1/chat/completions", `{"model":"`+served+`","stream":true,"messages":[{"role":"user","content":"Say hello"}]}`)
}

func BenchmarkGatewayChatStream(b *testing.B) {
	up := simulatorServer(b)
	g := benchGateway(b, up, gateway.Options{})
	benchmarkPost(b, g+gateway.Prefix+"team/openai/-/v1/chat/completions", `{"model":"team/llama","stream":true,"messages":[{"role":"user","content":"Say hello"}]}`)
}

// BenchmarkGatewayChatTraced and BenchmarkGatewayChatStreamTraced are the two above with
// tracing on, every request sampled, to an exporter that drops the spans: compare them.
func BenchmarkGatewayChatTraced(b *testing.B) {
	up := simulatorServer(b)
	g := benchGateway(b, up, gateway.Options{TracerProvider: tracedProvider(b)})
	benchmarkPost(b, g+gateway.Prefix+"team/openai/-/v1/chat/completions", `{"model":"team/llama","messages":[{"role":"user","content":"Say hello"}]}`)
}

func BenchmarkGatewayChatStreamTraced(b *testing.B) {
	up := simulatorServer(b)
	g := benchGateway(b, up, gateway.Options{TracerProvider: tracedProvider(b)})
	benchmarkPost(b, g+gateway.Prefix+"team/openai/-/v1/chat/completions", `{"model":"team/llama","stream":true,"messages":[{"role":"user","content":"Say hello"}]}`)
}

func tracedProvider(b *testing.B) *sdktrace.TracerProvider {
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
	b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tp
}

func simulatorServer(b *testing.B) string {
	srv := newHTTPTestServer(simulator.New(simulator.Options{Models: []string{served}}))
	b.Cleanup(srv.Close)
	return srv.URL
}

func benchGateway(b *testing.B, upstreamURL string, opts gateway.Options, budgets ...*quota.Budget) string {
	store := routing.NewStore()
	table, _ := routing.New(routing.Spec{
		Providers: []routing.ProviderSpec{{Workspace: "team", Name: "nim", BaseURL: upstreamURL, Ready: true, AuthHeader: "Authorization", AuthValue: "Bearer k"}},
		Entities: []routing.EntitySpec{{Workspace: "team", Name: "llama", Backends: []routing.BackendSpec{{Workspace: "team", Name: "nim", ServedModel: served}}},
			// A virtual model over llama alone, for BenchmarkGatewayChatVirtual.
			{Workspace: "team", Name: "chat", Targets: []routing.TargetSpec{{Workspace: "team", Name: "llama", Weight: 1}}}},
		Budgets: budgets,
	}, nil)
	store.Swap(table)
	opts.Store, opts.AllowLocalUpstreams = store, true
	g, err := gateway.New(opts)
	if err != nil {
		b.Fatal(err)
	}
	srv := newHTTPTestServer(g)
	b.Cleanup(srv.Close)
	return srv.URL
}

// benchmarkPost posts body to url in parallel, with an Authorization header when given.
func benchmarkPost(b *testing.B, url, body string, authorization ...string) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			if len(authorization) > 0 {
				req.Header.Set("Authorization", authorization[0])
			}
			resp, err := client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Fatalf("status %d", resp.StatusCode)
			}
		}
	})
}
