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
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/infergate/infergate/internal/gateway"
	"github.com/infergate/infergate/internal/routing"
	"github.com/infergate/infergate/internal/simulator"
)

const served = "meta/llama-3.1-8b-instruct"

// oneModel is a gateway with workspace "team" and entity "llama" served by one upstream that
// needs the key "sk-upstream".
func oneModel(t *testing.T, opts gateway.Options) (*gw, *upstream) {
	t.Helper()
	up := newUpstream(t, simulator.Options{Name: "nim-a", Models: []string{served}, APIKey: "sk-upstream"})
	p := provider("team", "nim-a", up.srv.URL)
	p.AuthHeader, p.AuthValue = "Authorization", "Bearer sk-upstream"
	return newGateway(t, routing.Spec{
		Providers: []routing.ProviderSpec{p},
		Entities:  []routing.EntitySpec{entity("team", "llama", backend("team", "nim-a", served))},
	}, opts), up
}

func TestChatCompletion(t *testing.T) {
	g, up := oneModel(t, gateway.Options{})
	for _, model := range []string{"team/llama", "llama"} {
		resp, err := g.client("team").Chat.Completions.New(ctxTimeout(t, 10*time.Second), chatParams(model))
		if err != nil {
			t.Fatalf("model %q: %v", model, err)
		}
		if resp.Model != "team/llama" {
			t.Errorf("response model %q, want team/llama", resp.Model)
		}
		if !strings.HasPrefix(resp.Choices[0].Message.Content, "Hello from nim-a.") || resp.Usage.CompletionTokens == 0 {
			t.Errorf("unexpected completion %+v", resp)
		}
		got := up.lastRequest(t)
		var body map[string]any
		if err := json.Unmarshal(got.Body, &body); err != nil {
			t.Fatal(err)
		}
		if body["model"] != served || got.Path != "/v1/chat/completions" {
			t.Errorf("upstream got model %v on %s, want %s on /v1/chat/completions", body["model"], got.Path, served)
		}
	}
}

func TestStreamingChatArrivesChunkByChunk(t *testing.T) {
	// An upstream that sends one chunk and then waits until the client has it: a gateway
	// that buffered the stream would never deliver it and the test would time out.
	release := make(chan struct{})
	upstreamDone := make(chan struct{})
	up := httpServer(t, func(w http.ResponseWriter, r *http.Request) {
		defer close(upstreamDone)
		w.Header().Set("Content-Type", "text/event-stream")
		chunk := func(content string, finish string) string {
			f := "null"
			if finish != "" {
				f = `"` + finish + `"`
			}
			return `data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"` + served +
				`","choices":[{"index":0,"delta":{"content":"` + content + `"},"finish_reason":` + f + "}]}\n\n"
		}
		fmt.Fprint(w, chunk("first", ""))
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		fmt.Fprint(w, chunk(" second", ""))
		fmt.Fprint(w, chunk("", "stop"))
		fmt.Fprint(w, `data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"`+served+`","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":2,"total_tokens":9}}`+"\n\n")
		fmt.Fprint(w, "data: [DONE]\n\n")
	})
	g := newGateway(t, routing.Spec{
		Providers: []routing.ProviderSpec{provider("team", "nim", up)},
		Entities:  []routing.EntitySpec{entity("team", "llama", backend("team", "nim", served))},
	}, gateway.Options{})

	params := chatParams("team/llama")
	params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	stream := g.client("team").Chat.Completions.NewStreaming(ctxTimeout(t, 10*time.Second), params)
	var content strings.Builder
	chunks := 0
	for stream.Next() {
		c := stream.Current()
		chunks++
		if chunks == 1 {
			select {
			case <-upstreamDone:
				t.Fatal("the first chunk arrived only after the upstream finished")
			default:
			}
			if open := counter(t, g.reg, "infergate_gateway_streams_open", map[string]string{"workspace": "team", "provider": "nim"}); open != 1 {
				t.Errorf("streams open while one is: %v", open)
			}
			close(release)
		}
		if c.Model != "team/llama" {
			t.Errorf("chunk %d has model %q, want team/llama", chunks, c.Model)
		}
		if len(c.Choices) > 0 {
			content.WriteString(c.Choices[0].Delta.Content)
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if content.String() != "first second" || chunks != 4 {
		t.Errorf("got %d chunks with %q", chunks, content.String())
	}
	eventually(t, 5*time.Second, func() error {
		if got := counter(t, g.reg, "infergate_gateway_completion_tokens_total", map[string]string{"entity": "llama"}); got != 2 {
			return fmt.Errorf("completion tokens %v, want 2 from the stream's usage", got)
		}
		return nil
	})
	if got := counter(t, g.reg, "infergate_gateway_prompt_tokens_total", map[string]string{"entity": "llama", "provider": "nim"}); got != 7 {
		t.Errorf("prompt tokens %v, want 7", got)
	}
	if got := counter(t, g.reg, "infergate_gateway_time_to_first_token_seconds", map[string]string{"workspace": "team", "entity": "llama", "provider": "nim"}); got != 1 {
		t.Errorf("time to first token observed %v times, want once", got)
	}
	if open := counter(t, g.reg, "infergate_gateway_streams_open", map[string]string{"provider": "nim"}); open != 0 {
		t.Errorf("streams open after the stream: %v", open)
	}
}

// httpServer starts a handler on loopback and returns its URL.
func httpServer(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	srv := newHTTPTestServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestCompletionsEmbeddingsAndModels(t *testing.T) {
	g, up := oneModel(t, gateway.Options{})
	ctx := ctxTimeout(t, 10*time.Second)
	c := g.client("team")

	comp, err := c.Completions.New(ctx, openai.CompletionNewParams{
		Model:  "team/llama",
		Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("Once upon a time")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if comp.Model != "team/llama" || comp.Choices[0].Text == "" {
		t.Errorf("completion %+v", comp)
	}

	emb, err := c.Embeddings.New(ctx, openai.EmbeddingNewParams{
		Model: "llama",
		Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"a", "b"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if emb.Model != "team/llama" || len(emb.Data) != 2 || len(emb.Data[0].Embedding) != 16 || emb.Usage.PromptTokens == 0 {
		t.Errorf("embeddings %+v", emb)
	}
	if got := up.lastRequest(t).Path; got != "/v1/embeddings" {
		t.Errorf("upstream path %s", got)
	}

	list, err := c.Models.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Data) != 1 || list.Data[0].ID != "team/llama" || list.Data[0].OwnedBy != "team" || list.Data[0].Created != 1700000000 {
		t.Errorf("models %+v", list.Data)
	}
	for _, name := range []string{"team/llama", "llama"} {
		m, err := c.Models.Get(ctx, name)
		if err != nil {
			t.Fatalf("get %s: %v", name, err)
		}
		if m.ID != "team/llama" {
			t.Errorf("get %s: %+v", name, m)
		}
	}
	_, err = c.Models.Get(ctx, "nothing")
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusNotFound {
		t.Errorf("get of an unknown model: %v", err)
	}
	// Other workspaces see nothing.
	other, err := g.client("elsewhere").Models.List(ctx)
	if err != nil || len(other.Data) != 0 {
		t.Errorf("another workspace lists %+v, %v", other, err)
	}
}

func TestErrorsFollowTheContract(t *testing.T) {
	up := newUpstream(t, simulator.Options{Models: []string{served}})
	g := newGateway(t, routing.Spec{
		Providers: []routing.ProviderSpec{
			provider("team", "nim", up.srv.URL),
			{Workspace: "team", Name: "sleeping", BaseURL: up.srv.URL, Ready: false},
			{Workspace: "team", Name: "keyless", BaseURL: up.srv.URL, Ready: false, MissingCredentials: true},
		},
		Entities: []routing.EntitySpec{
			entity("team", "llama", backend("team", "nim", served)),
			entity("team", "idle", backend("team", "sleeping", served)),
		},
	}, gateway.Options{})
	small := newGateway(t, routing.Spec{
		Providers: []routing.ProviderSpec{provider("team", "nim", up.srv.URL)},
		Entities:  []routing.EntitySpec{entity("team", "llama", backend("team", "nim", served))},
	}, gateway.Options{MaxBodyBytes: 1024})

	openaiURL := g.base("team") + "/openai/-/v1/chat/completions"
	tests := []struct {
		name, method, url, body string
		status                  int
		code, detail            string
	}{
		{"bad workspace", "POST", g.base("Team_1") + "/openai/-/v1/chat/completions", `{"model":"llama"}`, 422, "invalid_name", "Invalid workspace"},
		{"bad model name", "POST", openaiURL, `{"model":"x--y"}`, 422, "invalid_name", "Invalid model: Name must start with a lowercase letter"},
		{"vendor id as model", "POST", openaiURL, `{"model":"llama-3.3-70b"}`, 422, "invalid_name", "Invalid model"},
		{"model of another workspace", "POST", openaiURL, `{"model":"other/llama"}`, 422, "invalid_name", "does not match the workspace 'team'"},
		{"unknown model", "POST", openaiURL, `{"model":"team/mistral"}`, 404, "model_not_found", "Model entity not found for team/mistral"},
		{"no ready provider", "POST", openaiURL, `{"model":"idle"}`, 503, "no_ready_provider", "No ready provider for model entity team/idle"},
		{"body not JSON", "POST", openaiURL, `model=llama`, 400, "invalid_body", "Invalid request body"},
		{"body not an object", "POST", openaiURL, `["llama"]`, 400, "invalid_body", "Invalid request body"},
		{"no model", "POST", openaiURL, `{"messages":[]}`, 400, "missing_model", "Could not extract model from openai request"},
		{"model not a string", "POST", openaiURL, `{"model":7}`, 400, "missing_model", "'model' must be a string"},
		{"body over the limit", "POST", small.base("team") + "/openai/-/v1/chat/completions", `{"model":"llama","pad":"` + strings.Repeat("x", 2000) + `"}`, 413, "body_too_large", "larger than the limit of 1024 bytes"},
		{"model route bad name", "POST", g.base("team") + "/model/meta/llama/-/v1/chat/completions", `{}`, 422, "invalid_name", "Invalid name"},
		{"model route unknown", "POST", g.base("team") + "/model/mistral/-/v1/chat/completions", `{}`, 404, "model_not_found", "Model entity not found for team/mistral"},
		{"model route not ready", "POST", g.base("team") + "/model/idle/-/v1/chat/completions", `{}`, 503, "no_ready_provider", "team/idle"},
		{"provider route unknown", "GET", g.base("team") + "/provider/nobody/-/v1/models", "", 404, "provider_not_found", "Model provider not found for team/nobody"},
		{"provider route bad name", "GET", g.base("team") + "/provider/No_Body/-/v1/models", "", 422, "invalid_name", "Invalid name"},
		{"provider without its secret", "GET", g.base("team") + "/provider/keyless/-/v1/models", "", 424, "secret_unavailable", "Could not fetch secret for provider team/keyless"},
		{"provider not ready", "GET", g.base("team") + "/provider/sleeping/ready", "", 404, "provider_not_ready", "Provider not ready for team/sleeping"},
		{"unknown route", "GET", g.url + "/v1/chat/completions", "", 404, "not_found", "Not Found"},
		{"unknown model get", "GET", g.base("team") + "/openai/-/v1/models/mistral", "", 404, "model_not_found", "team/mistral"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, data := do(t, tt.method, tt.url, tt.body, map[string]string{"Content-Type": "application/json"})
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, data)
			}
			e := decodeError(t, data)
			if e.Error.Code != tt.code || !strings.Contains(e.Detail, tt.detail) {
				t.Errorf("code %q detail %q; want %q and %q", e.Error.Code, e.Detail, tt.code, tt.detail)
			}
			if resp.Header.Get("X-Request-Id") == "" {
				t.Error("no X-Request-Id on an error")
			}
		})
	}

	// What an OpenAI SDK user sees for the same errors.
	_, err := g.client("team").Chat.Completions.New(ctxTimeout(t, 5*time.Second), chatParams("idle"))
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 503 || !strings.Contains(apiErr.Message, "No ready provider") {
		t.Errorf("SDK error for 503: %v", err)
	}

	resp, data := do(t, "GET", g.base("team")+"/provider/nim/ready", "", nil)
	if resp.StatusCode != 200 || !strings.Contains(string(data), `"ready":true,"provider":"team/nim"`) {
		t.Errorf("ready provider: %d %s", resp.StatusCode, data)
	}
	// Errors are counted without label values taken from what the client made up.
	if got := counter(t, g.reg, "infergate_gateway_requests_total", map[string]string{"code": "404", "entity": ""}); got < 4 {
		t.Errorf("404s counted: %v", got)
	}
}

func TestTenMegabyteRequestPasses(t *testing.T) {
	g, up := oneModel(t, gateway.Options{})
	big := strings.Repeat("lorem ipsum ", 10<<20/12+1)
	emb, err := g.client("team").Embeddings.New(ctxTimeout(t, 30*time.Second), openai.EmbeddingNewParams{
		Model: "llama",
		Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String(big)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(emb.Data) != 1 {
		t.Fatalf("embeddings %+v", emb.Data)
	}
	if n := len(up.lastRequest(t).Body); n < 10<<20 {
		t.Errorf("upstream got %d bytes, want the whole 10 MB", n)
	}
}

// Under every balancing policy, a request that no provider ran is retried on another.
func TestFailoverAcrossProviders(t *testing.T) {
	for _, b := range []routing.Balancing{routing.CacheAware, routing.LeastRequest, routing.RoundRobin, routing.Failover} {
		t.Run(b.String(), func(t *testing.T) { testFailoverAcrossProviders(t, b) })
	}
}

func testFailoverAcrossProviders(t *testing.T, b routing.Balancing) {
	busy := newUpstream(t, simulator.Options{Name: "busy", Models: []string{served}})
	busy.sim.SetStatus(http.StatusServiceUnavailable)
	ok := newUpstream(t, simulator.Options{Name: "ok", Models: []string{served}})
	llama := entity("team", "llama", backend("team", "down", served), backend("team", "busy", served), backend("team", "ok", served))
	llama.Balancing = b
	g := newGateway(t, routing.Spec{
		Providers: []routing.ProviderSpec{
			provider("team", "down", deadURL(t)),
			provider("team", "busy", busy.srv.URL),
			provider("team", "ok", ok.srv.URL),
		},
		Entities: []routing.EntitySpec{llama},
	}, gateway.Options{Policy: routing.Policy{EjectAfter: 1000}})

	for i := 0; i < 20; i++ {
		// Each prompt its own: the prefix picks a provider, so the same prompt would always
		// go to the same first one.
		params := chatParams("llama")
		params.Messages = []openai.ChatCompletionMessageParamUnion{openai.UserMessage(fmt.Sprintf("Say hello, number %d", i))}
		resp, err := g.client("team").Chat.Completions.New(ctxTimeout(t, 10*time.Second), params)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if !strings.Contains(resp.Choices[0].Message.Content, "Hello from ok.") {
			t.Fatalf("request %d answered by %q", i, resp.Choices[0].Message.Content)
		}
	}
	if busy.sim.Served() == 0 {
		t.Error("the busy provider was never tried; the test proves nothing")
	}
	for _, reason := range []string{"connect", "503"} {
		if got := counter(t, g.reg, "infergate_gateway_upstream_retries_total", map[string]string{"reason": reason}); got == 0 {
			t.Errorf("no retries counted for %s", reason)
		}
	}
}

// The clock is the test's: the cool-down ends when the test says so, not after some real
// milliseconds that a slow run under -race may spend before its requests are done.
func TestEjectionAndRecovery(t *testing.T) {
	clock := newFakeClock()
	flaky := newUpstream(t, simulator.Options{Name: "flaky", Models: []string{served}})
	steady := newUpstream(t, simulator.Options{Name: "steady", Models: []string{served}})
	llama := entity("team", "llama", backend("team", "flaky", served), backend("team", "steady", served))
	llama.RetryOn = routing.RetryGatewayError
	g := newGateway(t, routing.Spec{
		Providers: []routing.ProviderSpec{provider("team", "flaky", flaky.srv.URL), provider("team", "steady", steady.srv.URL)},
		Entities:  []routing.EntitySpec{llama},
	}, gateway.Options{Now: clock.Now, Policy: routing.Policy{EjectAfter: 2, BaseEjection: 30 * time.Second, MaxEjection: 30 * time.Second}})
	chat := func() {
		t.Helper()
		if _, err := g.client("team").Chat.Completions.New(ctxTimeout(t, 10*time.Second), chatParams("llama")); err != nil {
			t.Fatal(err)
		}
	}

	flaky.sim.SetStatus(http.StatusBadGateway)
	for i := 0; counter(t, g.reg, "infergate_gateway_provider_ejections_total", map[string]string{"provider": "flaky"}) == 0; i++ {
		if i == 50 {
			t.Fatal("flaky answers 502 and is never ejected")
		}
		chat()
	}
	// While it is ejected, the flaky provider gets nothing.
	before := flaky.sim.Served()
	for i := 0; i < 10; i++ {
		chat()
	}
	if got := flaky.sim.Served(); got != before {
		t.Errorf("an ejected provider received %d requests", got-before)
	}
	if counter(t, g.reg, "infergate_gateway_provider_ejected", map[string]string{"provider": "flaky"}) != 1 {
		t.Error("the ejected gauge does not show the ejection")
	}

	// Healed and past its cool-down, it is tried again and takes traffic.
	flaky.sim.SetStatus(0)
	clock.Advance(31 * time.Second)
	if counter(t, g.reg, "infergate_gateway_provider_ejected", map[string]string{"provider": "flaky"}) != 0 {
		t.Error("still shown ejected after the cool-down")
	}
	before = flaky.sim.Served()
	for i := 0; i < 20; i++ {
		chat()
	}
	if flaky.sim.Served() == before {
		t.Error("the healed provider gets no traffic after its cool-down")
	}
}

// Without the entity's opt-in, a failure after which the request may have run upstream is
// answered, not retried: the first provider may have run (and billed) the completion. With
// it, another provider is tried.
func TestRetriesNeverRepeatARequestThatMayHaveRun(t *testing.T) {
	slow := newUpstream(t, simulator.Options{Name: "slow", Models: []string{served}, Latency: 2 * time.Second})
	var resets atomic.Int32
	reset := newHTTPTestServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resets.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close() // the request was received; no answer comes
		}
	}))
	t.Cleanup(reset.Close)
	tests := []struct {
		name    string
		first   string // URL of the provider tried first, when not a simulator answering answer
		answer  int
		opt     routing.RetryOn
		status  int // without the opt-in
		counted func() int64
	}{
		{"502", "", http.StatusBadGateway, routing.RetryGatewayError, http.StatusBadGateway, nil},
		{"504", "", http.StatusGatewayTimeout, routing.RetryGatewayError, http.StatusGatewayTimeout, nil},
		{"no response headers in time", slow.srv.URL, 0, routing.RetryTimeout, http.StatusGatewayTimeout, slow.sim.Served},
		{"connection lost after the request was sent", reset.URL, 0, routing.RetryReset, http.StatusBadGateway, func() int64 { return int64(resets.Load()) }},
	}
	for _, tt := range tests {
		for _, optIn := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s, opt-in %v", tt.name, optIn), func(t *testing.T) {
				failing := newUpstream(t, simulator.Options{Name: "failing", Models: []string{served}})
				failing.sim.SetStatus(tt.answer)
				other := newUpstream(t, simulator.Options{Name: "other", Models: []string{served}})
				first := provider("team", "first", failing.srv.URL)
				if tt.first != "" {
					first.BaseURL = tt.first
				}
				first.Timeouts.ResponseHeader = 200 * time.Millisecond
				second := provider("team", "second", other.srv.URL)
				// Weights make the first provider the first choice: 1000 to 1.
				llama := entity("team", "llama", routing.BackendSpec{Workspace: "team", Name: "first", ServedModel: served, Weight: 1000},
					routing.BackendSpec{Workspace: "team", Name: "second", ServedModel: served, Weight: 1})
				if optIn {
					llama.RetryOn = tt.opt
				}
				g := newGateway(t, routing.Spec{Providers: []routing.ProviderSpec{first, second}, Entities: []routing.EntitySpec{llama}},
					gateway.Options{Policy: routing.Policy{EjectAfter: 1000}})
				ranFirst := failing.sim.Served // the first provider received (and may have run) the request
				if tt.counted != nil {
					ranFirst = tt.counted
				}
				tried := 0       // requests the first provider received
				var served int64 // what the other provider should have served
				for i := 0; i < 10 && tried < 3; i++ {
					before := ranFirst()
					resp, body := do(t, "POST", g.base("team")+"/openai/-/v1/chat/completions", `{"model":"llama","messages":[]}`, nil)
					if ranFirst() == before {
						// The weighted pick chose the second provider first (about 1 in 500):
						// that is no retry.
						served++
						continue
					}
					tried++
					if optIn {
						served++
					}
					switch {
					case !optIn && (resp.StatusCode != tt.status || other.sim.Served() != served):
						t.Fatalf("status %s (want %d), the other provider served %d: %s", resp.Status, tt.status, other.sim.Served(), body)
					case optIn && (resp.StatusCode != 200 || other.sim.Served() != served):
						t.Fatalf("status %s, the other provider served %d, want a retry there: %s", resp.Status, other.sim.Served(), body)
					}
				}
				if tried < 3 {
					t.Fatalf("the first provider received %d requests of 10", tried)
				}
			})
		}
	}
}

func TestRetryAfterIsHonouredAndPassedOn(t *testing.T) {
	limited := newUpstream(t, simulator.Options{Name: "limited", Models: []string{served}})
	g := newGateway(t, routing.Spec{
		Providers: []routing.ProviderSpec{provider("team", "limited", limited.srv.URL)},
		Entities:  []routing.EntitySpec{entity("team", "llama", backend("team", "limited", served))},
	}, gateway.Options{Policy: routing.Policy{EjectAfter: 1000, MaxEjection: time.Minute}})

	// The only provider answers 429 with Retry-After: the client gets both, and the provider is
	// ejected at once.
	resp, data := do(t, "POST", g.base("team")+"/openai/-/v1/chat/completions", `{"model":"llama","messages":[]}`,
		map[string]string{"X-Sim-Status": "429", "X-Sim-Retry-After": "30"})
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "30" {
		t.Fatalf("status %d Retry-After %q: %s", resp.StatusCode, resp.Header.Get("Retry-After"), data)
	}
	if counter(t, g.reg, "infergate_gateway_provider_ejected", map[string]string{"provider": "limited"}) != 1 {
		t.Error("Retry-After did not eject the provider")
	}
	// Every provider is ejected: the gateway still tries the one that failed longest ago.
	before := limited.sim.Served()
	resp, _ = do(t, "POST", g.base("team")+"/openai/-/v1/chat/completions", `{"model":"llama","messages":[]}`, nil)
	if resp.StatusCode != 200 || limited.sim.Served() != before+1 {
		t.Errorf("with every provider ejected: status %d, upstream calls %d", resp.StatusCode, limited.sim.Served()-before)
	}
}

func TestClientCancelReachesUpstream(t *testing.T) {
	canceled := make(chan struct{})
	up := httpServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, `data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"`+served+`","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}],"usage":{"prompt_tokens":11,"completion_tokens":1,"total_tokens":12}}`+"\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		close(canceled)
	})
	g := newGateway(t, routing.Spec{
		Providers: []routing.ProviderSpec{provider("team", "nim", up)},
		Entities:  []routing.EntitySpec{entity("team", "llama", backend("team", "nim", served))},
	}, gateway.Options{})

	ctx, cancel := contextWithCancel()
	stream := g.client("team").Chat.Completions.NewStreaming(ctx, chatParams("llama"))
	if !stream.Next() {
		t.Fatalf("no first chunk: %v", stream.Err())
	}
	cancel()
	stream.Close()
	select {
	case <-canceled:
	case <-time.After(10 * time.Second):
		t.Fatal("the upstream request was not canceled when the client went away")
	}
	// Usage that arrived before the client left is still counted.
	eventually(t, 5*time.Second, func() error {
		if got := counter(t, g.reg, "infergate_gateway_prompt_tokens_total", map[string]string{"entity": "llama"}); got != 11 {
			return fmt.Errorf("prompt tokens %v, want 11", got)
		}
		return nil
	})
}

func TestHeaderHygieneAndKeyInjection(t *testing.T) {
	// The provider's key travels in a header of its own (Azure's api-key), so that none of the
	// client's credential headers is overwritten by the key: each must be stripped to pass.
	up := newUpstream(t, simulator.Options{Models: []string{served}})
	p := provider("team", "partner", up.srv.URL+"/v1")
	p.AuthHeader, p.AuthValue = "Api-Key", "partner-key"
	p.DefaultHeaders = []routing.Header{{Name: "x-team", Value: "platform"}, {Name: "X-Tier", Value: "gold"}}
	p.RequiredHeaders = []routing.Header{{Name: "X-Api-Version", Value: "2025-06-01"}}
	p.DefaultBody = []routing.BodyField{{Name: "max_tokens", Value: []byte("64")}, {Name: "temperature", Value: []byte("0.5")}}
	p.RequiredBody = []routing.BodyField{{Name: "user", Value: []byte(`"gateway"`)}}
	g := newGateway(t, routing.Spec{
		Providers: []routing.ProviderSpec{p},
		Entities:  []routing.EntitySpec{entity("team", "llama", backend("team", "partner", served))},
	}, gateway.Options{})

	resp, data := do(t, "POST", g.base("team")+"/openai/-/v1/chat/completions",
		`{"model":"team/llama","messages":[{"role":"user","content":"hi"}],"temperature":0.9,"user":"mallory"}`,
		map[string]string{
			"Authorization":     "Bearer client-secret",
			"X-Api-Key":         "client-secret",
			"Cookie":            "session=client-secret",
			"X-Forwarded-For":   "10.1.2.3",
			"X-Forwarded-Host":  "evil.example",
			"X-Forwarded-Proto": "http",
			"X-Forwarded-Port":  "443",
			"Forwarded":         "for=10.1.2.3",
			"X-Tier":            "silver",
			"X-Api-Version":     "1999",
			"X-Request-Id":      "req-from-client-42",
			"Content-Type":      "application/json",
		})
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, data)
	}
	got := up.lastRequest(t)
	for _, h := range []string{"Authorization", "X-Api-Key", "Cookie", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-Port", "Forwarded"} {
		if v := got.Header.Get(h); v != "" {
			t.Errorf("upstream received %s: %q", h, v)
		}
	}
	for _, vs := range got.Header {
		for _, v := range vs {
			if strings.Contains(v, "client-secret") {
				t.Errorf("a client credential reached the upstream: %q", v)
			}
		}
	}
	want := map[string]string{
		"Api-Key":       "partner-key",        // the provider's key, under its header
		"X-Team":        "platform",           // default, absent from the request
		"X-Tier":        "silver",             // default, but the client's wins
		"X-Api-Version": "2025-06-01",         // required: the provider's wins
		"X-Request-Id":  "req-from-client-42", // taken from the client
	}
	for h, v := range want {
		if got.Header.Get(h) != v {
			t.Errorf("upstream %s = %q, want %q", h, got.Header.Get(h), v)
		}
	}
	if got.Path != "/v1/chat/completions" {
		t.Errorf("upstream path %q: the duplicate v1/ must be dropped", got.Path)
	}
	var body map[string]any
	if err := json.Unmarshal(got.Body, &body); err != nil {
		t.Fatalf("upstream body is not JSON: %v: %s", err, got.Body)
	}
	if body["model"] != served || body["max_tokens"] != 64.0 || body["temperature"] != 0.9 || body["user"] != "gateway" {
		t.Errorf("upstream body %s", got.Body)
	}
	if resp.Header.Get("X-Request-Id") != "req-from-client-42" {
		t.Errorf("X-Request-Id echoed %q", resp.Header.Get("X-Request-Id"))
	}

	// Without a client id the gateway makes one, sends it up and echoes it back.
	resp, _ = do(t, "POST", g.base("team")+"/openai/-/v1/chat/completions", `{"model":"llama","messages":[]}`, nil)
	id := resp.Header.Get("X-Request-Id")
	if len(id) != 32 || up.lastRequest(t).Header.Get("X-Request-Id") != id {
		t.Errorf("generated id %q, upstream saw %q", id, up.lastRequest(t).Header.Get("X-Request-Id"))
	}
}

func TestProviderRouteIsRawPassThrough(t *testing.T) {
	up := newUpstream(t, simulator.Options{Models: []string{served}, APIKey: "k"})
	p := provider("team", "nim", up.srv.URL)
	p.AuthHeader, p.AuthValue = "Authorization", "Bearer k"
	g := newGateway(t, routing.Spec{Providers: []routing.ProviderSpec{p}}, gateway.Options{})

	// The SDK pointed at the provider route talks to the upstream's own model names.
	c := openai.NewClient(option.WithBaseURL(g.base("team")+"/provider/nim/-/v1/"), option.WithAPIKey("client"), option.WithMaxRetries(0))
	resp, err := c.Chat.Completions.New(ctxTimeout(t, 10*time.Second), chatParams(served))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Model != served {
		t.Errorf("model %q: the provider route must not rewrite", resp.Model)
	}
	r, data := do(t, "GET", g.base("team")+"/provider/nim/-/v1/models?limit=5", "", nil)
	if r.StatusCode != 200 || !strings.Contains(string(data), served) {
		t.Errorf("models through the provider route: %d %s", r.StatusCode, data)
	}
	if got := up.lastRequest(t); got.Path != "/v1/models" || got.RawQuery != "limit=5" || got.Header.Get("Authorization") != "Bearer k" {
		t.Errorf("upstream saw %s ?%s auth %q", got.Path, got.RawQuery, got.Header.Get("Authorization"))
	}
	// Upstream errors pass through as they are.
	r, _ = do(t, "DELETE", g.base("team")+"/provider/nim/-/v1/files/x", "", nil)
	if r.StatusCode != 404 || up.lastRequest(t).Method != "DELETE" {
		t.Errorf("DELETE through the provider route: %d, upstream method %s", r.StatusCode, up.lastRequest(t).Method)
	}
}

func TestModelRouteSetsTheServedModel(t *testing.T) {
	g, up := oneModel(t, gateway.Options{})
	// The body's model is irrelevant on the model route: the entity comes from the path.
	resp, data := do(t, "POST", g.base("team")+"/model/llama/-/v1/chat/completions",
		`{"messages":[{"role":"user","content":"hi"}]}`, map[string]string{"Content-Type": "application/json"})
	if resp.StatusCode != 200 || !strings.Contains(string(data), `"model":"team/llama"`) {
		t.Fatalf("%d %s", resp.StatusCode, data)
	}
	var body map[string]any
	if err := json.Unmarshal(up.lastRequest(t).Body, &body); err != nil || body["model"] != served {
		t.Errorf("upstream body %s", up.lastRequest(t).Body)
	}
	// A POST without a body goes through too, as it is.
	resp, data = do(t, "POST", g.base("team")+"/model/llama/-/v1/chat/completions", "", nil)
	if resp.StatusCode != 400 || len(up.lastRequest(t).Body) != 0 {
		t.Errorf("POST without a body on the model route: %d %s, upstream body %q", resp.StatusCode, data, up.lastRequest(t).Body)
	}
}

func TestSSEFramingIsKept(t *testing.T) {
	up := newUpstream(t, simulator.Options{Models: []string{served}, SSEExtras: true, Chunks: 3})
	g := newGateway(t, routing.Spec{
		Providers: []routing.ProviderSpec{provider("team", "nim", up.srv.URL)},
		Entities:  []routing.EntitySpec{entity("team", "llama", backend("team", "nim", served))},
	}, gateway.Options{})
	read := func(url, model string) []string {
		resp, err := http.Post(url, "application/json", strings.NewReader(`{"model":"`+model+`","stream":true,"stream_options":{"include_usage":true},"messages":[]}`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
			t.Errorf("content type %q", ct)
		}
		var lines []string
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			line := sc.Text()
			// Ids and timestamps differ between two runs of the simulator.
			line = regexpReplace(line)
			lines = append(lines, line)
		}
		return lines
	}
	direct := read(up.srv.URL+"/v1/chat/completions", served)
	through := read(g.base("team")+"/openai/-/v1/chat/completions", "team/llama")
	if len(direct) != len(through) {
		t.Fatalf("%d lines direct, %d through the gateway:\n%s\n---\n%s", len(direct), len(through), strings.Join(direct, "\n"), strings.Join(through, "\n"))
	}
	for i := range direct {
		want := strings.ReplaceAll(direct[i], `"model":"`+served+`"`, `"model":"team/llama"`)
		if through[i] != want {
			t.Errorf("line %d:\n got %q\nwant %q", i, through[i], want)
		}
	}
	if !strings.HasPrefix(direct[0], ":") || !strings.Contains(strings.Join(direct, "\n"), "event: chunk") || direct[len(direct)-2] != "data: [DONE]" {
		t.Errorf("the simulator did not send comments, events and [DONE]:\n%s", strings.Join(direct, "\n"))
	}
}

func TestStreamIdleTimeoutEndsTheStream(t *testing.T) {
	canceled := make(chan struct{})
	up := httpServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, `data: {"model":"`+served+`","choices":[{"index":0,"delta":{"content":"hi"}}]}`+"\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		close(canceled)
	})
	p := provider("team", "nim", up)
	p.Timeouts.StreamIdle = 200 * time.Millisecond
	g := newGateway(t, routing.Spec{
		Providers: []routing.ProviderSpec{p},
		Entities:  []routing.EntitySpec{entity("team", "llama", backend("team", "nim", served))},
	}, gateway.Options{})

	stream := g.client("team").Chat.Completions.NewStreaming(ctxTimeout(t, 30*time.Second), chatParams("llama"))
	n := 0
	for stream.Next() {
		n++
	}
	if n != 1 || stream.Err() == nil || !strings.Contains(stream.Err().Error(), "stream idle timeout") {
		t.Errorf("after %d chunks: err %v; want the idle timeout error event", n, stream.Err())
	}
	select {
	case <-canceled:
	case <-time.After(10 * time.Second):
		t.Fatal("the silent upstream was not canceled")
	}
}

// A model server that dies mid-stream (killed, its connection reset) must not look like a
// stream that ended: the client's SDK gets an error, never a silently short answer.
func TestUpstreamLostMidStreamIsAnErrorForTheClient(t *testing.T) {
	up := httpServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, `data: {"model":"`+served+`","choices":[{"index":0,"delta":{"content":"hi"}}]}`+"\n\n")
		w.(http.Flusher).Flush()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
	})
	g := newGateway(t, routing.Spec{
		Providers: []routing.ProviderSpec{provider("team", "nim", up)},
		Entities:  []routing.EntitySpec{entity("team", "llama", backend("team", "nim", served))},
	}, gateway.Options{})

	stream := g.client("team").Chat.Completions.NewStreaming(ctxTimeout(t, 30*time.Second), chatParams("llama"))
	n := 0
	for stream.Next() {
		n++
	}
	if n != 1 || stream.Err() == nil {
		t.Errorf("after %d chunks: err %v; want an error, the stream having been cut", n, stream.Err())
	}
}

// A model server that dies after a stream's headers and before its first event: the client
// does not get a 200 stream that ends before it began. With retryOn Reset the stream comes
// whole from another provider; without, the client gets a 502 that the SDK reports (and that
// the SDKs retry by default).
func TestUpstreamLostBeforeTheFirstEventFailsOver(t *testing.T) {
	var lost atomic.Int32
	dying := httpServer(t, func(w http.ResponseWriter, r *http.Request) {
		lost.Add(1)
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			conn.Close()
		}
	})
	healthy := newUpstream(t, simulator.Options{Name: "healthy", Models: []string{served}, Chunks: 3})
	for _, retry := range []bool{true, false} {
		t.Run(fmt.Sprintf("retryOn Reset %v", retry), func(t *testing.T) {
			llama := entity("team", "llama", backend("team", "dying", served), backend("team", "healthy", served))
			llama.Balancing = routing.Failover // the dying one first
			providers := []routing.ProviderSpec{provider("team", "dying", dying), provider("team", "healthy", healthy.srv.URL)}
			if retry {
				llama.RetryOn = routing.RetryReset
			} else {
				llama.Backends = llama.Backends[:1]
				providers = providers[:1]
			}
			g := newGateway(t, routing.Spec{Providers: providers, Entities: []routing.EntitySpec{llama}}, gateway.Options{})
			before := lost.Load()
			stream := g.client("team").Chat.Completions.NewStreaming(ctxTimeout(t, 30*time.Second), chatParams("llama"))
			n := 0
			for stream.Next() {
				if ch := stream.Current(); len(ch.Choices) > 0 && ch.Choices[0].Delta.Content != "" {
					n++
				}
			}
			if lost.Load() == before {
				t.Fatal("the dying provider was not tried: the test proves nothing")
			}
			var apiErr *openai.Error
			switch {
			case retry && (stream.Err() != nil || n != 3):
				t.Errorf("%d tokens, err %v; want the 3 of the healthy provider", n, stream.Err())
			case !retry && !(errors.As(stream.Err(), &apiErr) && apiErr.StatusCode == http.StatusBadGateway):
				t.Errorf("%d tokens, err %v; want a 502", n, stream.Err())
			}
		})
	}
}

func TestUpstreamAuthFailureIsABadGateway(t *testing.T) {
	up := newUpstream(t, simulator.Options{Models: []string{served}, APIKey: "right"})
	p := provider("team", "nim", up.srv.URL)
	p.AuthHeader, p.AuthValue = "Authorization", "Bearer wrong"
	g := newGateway(t, routing.Spec{
		Providers: []routing.ProviderSpec{p},
		Entities:  []routing.EntitySpec{entity("team", "llama", backend("team", "nim", served))},
	}, gateway.Options{})
	resp, data := do(t, "POST", g.base("team")+"/openai/-/v1/chat/completions", `{"model":"llama","messages":[]}`, nil)
	e := decodeError(t, data)
	if resp.StatusCode != 502 || e.Error.Code != "upstream_auth" || strings.Contains(string(data), "wrong") {
		t.Errorf("%d %s", resp.StatusCode, data)
	}
}

// Routing-table swaps while requests are in flight: no request fails or sees a torn table.
// Run with -race (make test does).
func TestTableSwapUnderConcurrentLoad(t *testing.T) {
	a := newUpstream(t, simulator.Options{Name: "a", Models: []string{served}, ChunkDelay: time.Millisecond, Chunks: 3})
	b := newUpstream(t, simulator.Options{Name: "b", Models: []string{served}, ChunkDelay: time.Millisecond, Chunks: 3})
	specs := []routing.Spec{
		{
			Providers: []routing.ProviderSpec{provider("team", "a", a.srv.URL)},
			Entities:  []routing.EntitySpec{entity("team", "llama", backend("team", "a", served))},
		},
		{
			Providers: []routing.ProviderSpec{provider("team", "a", a.srv.URL), provider("team", "b", b.srv.URL)},
			Entities:  []routing.EntitySpec{entity("team", "llama", backend("team", "a", served), backend("team", "b", served))},
		},
		{
			Providers: []routing.ProviderSpec{provider("team", "b", b.srv.URL)},
			Entities:  []routing.EntitySpec{entity("team", "llama", backend("team", "b", served))},
		},
	}
	g := newGateway(t, specs[0], gateway.Options{})
	stop := make(chan struct{})
	swapped := make(chan int)
	go func() {
		n := 0
		prev := g.store.Load()
		for {
			select {
			case <-stop:
				swapped <- n
				return
			default:
			}
			next, _ := routing.New(specs[n%len(specs)], prev)
			g.store.Swap(next)
			prev = next
			n++
			time.Sleep(time.Millisecond)
		}
	}()
	errs := make(chan error, 8)
	for w := 0; w < 8; w++ {
		go func() {
			c := g.client("team")
			for i := 0; i < 25; i++ {
				if i%2 == 0 {
					if _, err := c.Chat.Completions.New(ctxTimeout(t, 10*time.Second), chatParams("llama")); err != nil {
						errs <- err
						return
					}
					continue
				}
				stream := c.Chat.Completions.NewStreaming(ctxTimeout(t, 10*time.Second), chatParams("llama"))
				for stream.Next() {
					if m := stream.Current().Model; m != "team/llama" {
						errs <- fmt.Errorf("chunk model %q", m)
						return
					}
				}
				if err := stream.Err(); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for w := 0; w < 8; w++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	close(stop)
	if n := <-swapped; n < 10 {
		t.Errorf("only %d swaps happened during the load", n)
	}
	if a.sim.Served() == 0 || b.sim.Served() == 0 {
		t.Errorf("traffic a=%d b=%d: both tables should have served", a.sim.Served(), b.sim.Served())
	}
}

// fakeClock is a clock that moves only when the test says.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1800000000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
