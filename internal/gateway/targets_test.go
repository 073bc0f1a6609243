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
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/infergate/infergate/internal/flow"
	"github.com/infergate/infergate/internal/gateway"
	"github.com/infergate/infergate/internal/routing"
	"github.com/infergate/infergate/internal/simulator"
)

// virtual is team/chat, a virtual model over the entities team/<name> of targets, each
// served by its own simulator named after it, whose served model is "m-<name>".
type virtual struct {
	*gw
	ups map[string]*upstream
}

type targetDef struct {
	name          string
	weight, order int
	ttft          time.Duration
	opts          simulator.Options
	notReady      bool
	url           string // instead of the simulator's
}

func newVirtual(t *testing.T, affinity routing.Affinity, defs ...targetDef) *virtual {
	t.Helper()
	return newVirtualWith(t, gateway.Options{}, affinity, defs...)
}

func newVirtualWith(t *testing.T, opts gateway.Options, affinity routing.Affinity, defs ...targetDef) *virtual {
	t.Helper()
	v := &virtual{ups: map[string]*upstream{}}
	var spec routing.Spec
	chat := entity("team", "chat")
	chat.Affinity = affinity
	chat.Targets = []routing.TargetSpec{}
	for _, d := range defs {
		d.opts.Name, d.opts.Models = d.name, []string{"m-" + d.name}
		up := newUpstream(t, d.opts)
		v.ups[d.name] = up
		p := provider("team", "p-"+d.name, up.srv.URL)
		if d.url != "" {
			p.BaseURL = d.url
		}
		p.Ready = !d.notReady
		spec.Providers = append(spec.Providers, p)
		spec.Entities = append(spec.Entities, entity("team", d.name, backend("team", "p-"+d.name, "m-"+d.name)))
		chat.Targets = append(chat.Targets, routing.TargetSpec{Workspace: "team", Name: d.name, Weight: d.weight, Order: d.order, TimeToFirstToken: d.ttft})
	}
	spec.Entities = append(spec.Entities, chat)
	v.gw = newGateway(t, spec, opts)
	return v
}

func (v *virtual) served(name string) int64 { return v.ups[name].sim.Served() }

func (v *virtual) fallbacks(t *testing.T, target, reason string) float64 {
	return counter(t, v.reg, "infergate_gateway_fallbacks_total", map[string]string{"entity": "chat", "target": "team/" + target, "reason": reason})
}

// ask sends one chat completion for team/chat, streamed or not, and returns the text and
// every model name the client saw.
func (v *virtual) ask(t *testing.T, stream bool, content string) (string, []string, error) {
	t.Helper()
	c := v.client("team")
	params := openai.ChatCompletionNewParams{Model: "chat", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(content)}}
	ctx := ctxTimeout(t, 20*time.Second)
	if !stream {
		resp, err := c.Chat.Completions.New(ctx, params)
		if err != nil {
			return "", nil, err
		}
		return resp.Choices[0].Message.Content, []string{resp.Model}, nil
	}
	s := c.Chat.Completions.NewStreaming(ctx, params)
	var text strings.Builder
	var models []string
	for s.Next() {
		ch := s.Current()
		models = append(models, ch.Model)
		if len(ch.Choices) > 0 {
			text.WriteString(ch.Choices[0].Delta.Content)
		}
	}
	return text.String(), models, s.Err()
}

// servedBy checks that an answer came from the simulator named want, under the name the
// client sent.
func servedBy(t *testing.T, text string, models []string, err error, want string) {
	t.Helper()
	if err != nil {
		t.Fatalf("request failed: %v", err)
	}
	if !strings.Contains(text, want) {
		t.Errorf("answered by the wrong target: want %s, got %q", want, text)
	}
	if len(models) == 0 {
		t.Fatal("no response or event")
	}
	for _, m := range models {
		if m != "team/chat" {
			t.Fatalf("a response or event names model %q, want the name the client sent, team/chat", m)
		}
	}
}

func TestVirtualModelSplitsByWeight(t *testing.T) {
	v := newVirtual(t, routing.AffinityNone, targetDef{name: "stable", weight: 9}, targetDef{name: "canary", weight: 1})
	const n = 400
	for i := range n {
		text, models, err := v.ask(t, i%2 == 0, fmt.Sprintf("request %d", i))
		if err != nil {
			t.Fatal(err)
		}
		servedBy(t, text, models, nil, "") // the name the client sent, whoever served
	}
	canary := float64(v.served("canary"))
	if got := canary + float64(v.served("stable")); got != n {
		t.Fatalf("the targets served %v requests, want %d", got, n)
	}
	// Binomial(400, 0.1): mean 40, standard deviation 6; 4.5 deviations either way fail by
	// chance once in about 150,000 runs.
	if sd := math.Sqrt(n * 0.1 * 0.9); math.Abs(canary-40) > 4.5*sd {
		t.Errorf("the canary of weight 1 in 10 served %v of %d requests, want 40 ± %.0f", canary, n, 4.5*sd)
	}
	if got := counter(t, v.reg, "infergate_gateway_target_requests_total", map[string]string{"entity": "chat", "target": "team/canary", "code": "200"}); got != canary {
		t.Errorf("target_requests_total for the canary = %v, want %v", got, canary)
	}
}

func TestVirtualModelAffinityKeepsAConversationOnOneTarget(t *testing.T) {
	v := newVirtual(t, routing.AffinityConversation, targetDef{name: "a", weight: 1}, targetDef{name: "b", weight: 1})
	c := v.client("team")
	converse := func(first string, turns int) {
		t.Helper()
		// A short first turn, then the conversation grows past a KiB: it stays on its target.
		messages := []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("You answer in haiku."), openai.UserMessage(first)}
		for i := range turns {
			resp, err := c.Chat.Completions.New(ctxTimeout(t, 10*time.Second), openai.ChatCompletionNewParams{Model: "chat", Messages: messages})
			if err != nil {
				t.Fatal(err)
			}
			messages = append(messages, openai.AssistantMessage(resp.Choices[0].Message.Content),
				openai.UserMessage(fmt.Sprintf("Turn %d: ", i)+strings.Repeat("and then? ", 20)))
		}
	}
	converse("Tell me about the weather.", 12)
	if a, b := v.served("a"), v.served("b"); a != 0 && b != 0 {
		t.Errorf("one conversation went to both targets: %d and %d requests", a, b)
	}
	// Conversations that begin otherwise spread by weight.
	before := v.served("a")
	for i := range 40 {
		converse(fmt.Sprintf("Tell me about ship %d.", i), 1)
	}
	if got := v.served("a") - before; got == 0 || got == 40 {
		t.Errorf("40 different conversations all went to one target (%d to a)", got)
	}
}

func TestVirtualModelCallerAffinity(t *testing.T) {
	v := newVirtual(t, routing.AffinityCaller, targetDef{name: "a", weight: 1}, targetDef{name: "b", weight: 1})
	for i := range 30 {
		if _, _, err := v.ask(t, i%2 == 1, fmt.Sprintf("request %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	// Without authentication the caller is its address: every request here comes from one.
	if a, b := v.served("a"), v.served("b"); a != 0 && b != 0 {
		t.Errorf("one caller's requests went to both targets: %d and %d", a, b)
	}
}

// Each reason to fall back, streamed and not: the request is answered by the second target,
// under the name the client sent, and the fallback is counted by reason.
func TestVirtualModelFallsBack(t *testing.T) {
	cases := []struct {
		name, reason string
		first        targetDef
		streamOnly   bool
	}{
		{name: "no ready provider", first: targetDef{notReady: true}},
		{name: "connection refused", reason: "connect", first: targetDef{url: deadURL(t)}},
		{name: "429", reason: "429"},
		{name: "503", reason: "503"},
		{name: "the provider refuses the gateway's key", reason: "401", first: targetDef{opts: simulator.Options{APIKey: "sk-not-configured"}}},
		{name: "context too long", reason: "context_length", first: targetDef{opts: simulator.Options{MaxModelLen: 4}}},
		{name: "stalled stream", reason: "stall", streamOnly: true, first: targetDef{ttft: 150 * time.Millisecond, opts: simulator.Options{ChunkDelay: 5 * time.Second}}},
	}
	for _, tc := range cases {
		for _, stream := range []bool{false, true} {
			if tc.streamOnly && !stream {
				continue
			}
			t.Run(fmt.Sprintf("%s/stream=%v", tc.name, stream), func(t *testing.T) {
				first := tc.first
				first.name, first.weight = "self-hosted", 1
				v := newVirtual(t, routing.AffinityNone, first, targetDef{name: "cloud", weight: 1, order: 1})
				switch tc.reason {
				case "429", "503":
					v.ups["self-hosted"].sim.SetStatus(map[string]int{"429": 429, "503": 503}[tc.reason])
				}
				start := time.Now()
				text, models, err := v.ask(t, stream, "Say hello")
				servedBy(t, text, models, err, "cloud")
				if tc.reason == "stall" && time.Since(start) > 3*time.Second {
					t.Errorf("the stalled stream was waited out: %s", time.Since(start))
				}
				if tc.reason != "" {
					if got := v.fallbacks(t, "self-hosted", tc.reason); got != 1 {
						t.Errorf("fallbacks_total{reason=%q} = %v, want 1", tc.reason, got)
					}
				}
			})
		}
	}
}

// Without a target left, a failure is answered as for any entity: the client sees the last
// target's answer, under its own model name.
func TestVirtualModelAnswersTheLastFailure(t *testing.T) {
	v := newVirtual(t, routing.AffinityNone, targetDef{name: "a", weight: 1}, targetDef{name: "b", weight: 1, order: 1})
	v.ups["a"].sim.SetStatus(429)
	v.ups["b"].sim.SetStatus(429)
	resp, body := do(t, http.MethodPost, v.base("team")+"/openai/-/v1/chat/completions",
		`{"model":"chat","messages":[{"role":"user","content":"hi"}]}`, map[string]string{"Content-Type": "application/json", "X-Sim-Retry-After": "7"})
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "7" {
		t.Errorf("got %d with Retry-After %q, want 429 with the targets' Retry-After 7: %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	if a, b := v.served("a"), v.served("b"); a != 1 || b != 1 {
		t.Errorf("targets tried %d and %d times, want once each", a, b)
	}
	// A prompt too long for the last target is its answer: 400, as vLLM words it.
	v2 := newVirtual(t, routing.AffinityNone, targetDef{name: "small", weight: 1, opts: simulator.Options{MaxModelLen: 4}})
	_, _, err := v2.ask(t, false, "a prompt longer than four tokens")
	var e *openai.Error
	if !errors.As(err, &e) || e.StatusCode != 400 || !strings.Contains(e.Message, "maximum context length") {
		t.Errorf("want the target's 400 about its context, got %v", err)
	}
}

// A stream that has sent its first bytes is the client's: when it breaks, the client sees the
// error, and no other target is asked.
func TestVirtualModelNeverFallsBackAfterTheFirstByte(t *testing.T) {
	broken := newHTTPTestServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		fmt.Fprint(w, `data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m-broken","choices":[{"index":0,"delta":{"content":"Hel"}}]}`+"\n\n")
		w.(http.Flusher).Flush()
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	t.Cleanup(broken.Close)
	v := newVirtual(t, routing.AffinityNone, targetDef{name: "broken", weight: 1, url: broken.URL, ttft: time.Second}, targetDef{name: "cloud", weight: 1, order: 1})
	text, models, err := v.ask(t, true, "Say hello")
	if err == nil {
		t.Fatalf("a stream cut mid-way ended without an error for the SDK (%q)", text)
	}
	if text != "Hel" || len(models) != 1 || models[0] != "team/chat" {
		t.Errorf("the client got %q from %v, want the first event, named team/chat", text, models)
	}
	if n := v.served("cloud"); n != 0 {
		t.Errorf("the fallback was asked %d times after the first byte", n)
	}
}

// The served name a target sets goes upstream; every event comes back under the client's.
func TestVirtualModelServedNameAndRewrite(t *testing.T) {
	up := newUpstream(t, simulator.Options{Name: "big", Models: []string{"vendor/big-v2"}, Chunks: 12})
	spec := routing.Spec{
		Providers: []routing.ProviderSpec{provider("system", "build", up.srv.URL)},
		Entities: []routing.EntitySpec{
			entity("system", "big", backend("system", "build", "vendor/big")),
			{Workspace: "team", Name: "chat", Created: time.Unix(1700000000, 0), Targets: []routing.TargetSpec{{Workspace: "system", Name: "big", Weight: 1, Backends: []routing.BackendSpec{backend("system", "build", "vendor/big-v2")}}}},
		},
	}
	g := newGateway(t, spec, gateway.Options{AccessLog: false})
	v := &virtual{gw: g, ups: map[string]*upstream{"big": up}}
	for _, stream := range []bool{false, true} {
		text, models, err := v.ask(t, stream, "Say hello")
		servedBy(t, text, models, err, "big")
		var sent struct{ Model string }
		_ = json.Unmarshal(up.lastRequest(t).Body, &sent)
		if sent.Model != "vendor/big-v2" {
			t.Errorf("sent model %q upstream, want the target's served name vendor/big-v2", sent.Model)
		}
		if stream && len(models) < 12 {
			t.Errorf("saw %d events, want every one", len(models))
		}
	}
	// The model route serves it too.
	resp, body := do(t, http.MethodPost, g.base("team")+"/model/chat/-/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}]}`,
		map[string]string{"Content-Type": "application/json"})
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"model":"team/chat"`) {
		t.Errorf("the model route: %d %s", resp.StatusCode, body)
	}
	// The virtual model is listed under its own name; its target's workspace is not the caller's.
	resp, body = do(t, http.MethodGet, g.base("team")+"/openai/-/v1/models", "", nil)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"id":"team/chat"`) || strings.Contains(string(body), "big") {
		t.Errorf("v1/models = %d %s, want team/chat alone", resp.StatusCode, body)
	}
	resp, body = do(t, http.MethodGet, g.base("team")+"/openai/-/v1/models/chat", "", nil)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"id":"team/chat"`) {
		t.Errorf("v1/models/chat = %d %s", resp.StatusCode, body)
	}
}

// selfHostedWithCloud is sharedPool's team/llama on a simulated vLLM server (seqs slots), a
// team/cloud beside it, and team/chat over llama then cloud.
// With first, team/chat tries team/flaky (a simulator of its own) before llama.
func selfHostedWithCloud(t *testing.T, seqs int, class flow.Class, first ...bool) (*virtual, *upstream) {
	t.Helper()
	cloud := newUpstream(t, simulator.Options{Name: "cloud", Models: []string{"m-cloud"}})
	flaky := newUpstream(t, simulator.Options{Name: "flaky", Models: []string{"m-flaky"}})
	g, up := sharedPool(t, simulator.Options{Name: "self-hosted", MaxNumSeqs: seqs, ChunkDelay: 20 * time.Millisecond}, func(s *routing.Spec) {
		s.Providers = append(s.Providers, provider("team", "p-cloud", cloud.srv.URL), provider("team", "p-flaky", flaky.srv.URL))
		chat := routing.EntitySpec{Workspace: "team", Name: "chat", Priority: class, Targets: []routing.TargetSpec{
			{Workspace: "team", Name: "llama", Weight: 1, Order: 1}, {Workspace: "team", Name: "cloud", Weight: 1, Order: 2}}}
		if len(first) > 0 && first[0] {
			chat.Targets = append(chat.Targets, routing.TargetSpec{Workspace: "team", Name: "flaky", Weight: 1})
		}
		s.Entities = append(s.Entities, entity("team", "cloud", backend("team", "p-cloud", "m-cloud")), entity("team", "flaky", backend("team", "p-flaky", "m-flaky")), chat)
	}, "team")
	return &virtual{gw: g, ups: map[string]*upstream{"cloud": cloud, "self-hosted": up, "flaky": flaky}}, up
}

// report waits until the gateway's report of the self-hosted server satisfies ok.
func (v *virtual) report(t *testing.T, ok func(routing.EngineReport) bool) {
	t.Helper()
	eventually(t, 10*time.Second, func() error {
		p, _ := v.store.Load().Provider("system", "vllm")
		if r, _ := p.Health.LastReport(); !ok(r) {
			return fmt.Errorf("the server reports %+v", r)
		}
		return nil
	})
}

// A saturated self-hosted pool sends requests to the fallback at once, without queueing.
func TestVirtualModelFallsBackWhenSaturated(t *testing.T) {
	v, up := selfHostedWithCloud(t, 2, flow.Standard)
	g := v.gw
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	(&server{url: up.srv.URL}).occupy(ctx, t, 4)
	v.report(t, func(r routing.EngineReport) bool { return r.Waiting > 0 })
	for _, stream := range []bool{false, true} {
		text, models, err := v.ask(t, stream, "Say hello")
		servedBy(t, text, models, err, "cloud")
	}
	if got := counter(t, g.reg, "infergate_gateway_fallbacks_total", map[string]string{"target": "team/llama", "reason": "saturated"}); got != 2 {
		t.Errorf("fallbacks_total{reason=saturated} = %v, want 2", got)
	}
	if got := counter(t, g.reg, "infergate_gateway_queue_outcomes_total", nil); got != 0 {
		t.Errorf("%v requests met the queue; a fallback with room should take them", got)
	}
}

// The access log and the attempts' spans name the target that served; the request's span,
// the model the client called.
func TestVirtualModelNamesTheTargetThatServed(t *testing.T) {
	var logs accessLines
	recorder := tracetest.NewSpanRecorder()
	v := newVirtualWith(t, gateway.Options{Log: logs.logger(), AccessLog: true, TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))},
		routing.AffinityNone, targetDef{name: "self-hosted", weight: 1}, targetDef{name: "cloud", weight: 1, order: 1})
	v.ups["self-hosted"].sim.SetStatus(http.StatusServiceUnavailable)
	var resp *http.Response
	if _, err := v.client("team").Chat.Completions.New(ctxTimeout(t, 10*time.Second), chatParams("chat"), option.WithResponseInto(&resp)); err != nil {
		t.Fatal(err)
	}
	lines := logs.of(resp.Header.Get("X-Request-Id"), 5*time.Second)
	if len(lines) != 1 {
		t.Fatalf("access lines %v", lines)
	}
	for k, want := range map[string]any{"entity": "chat", "target": "team/cloud", "provider": "p-cloud", "attempts": float64(2), "status": float64(200)} {
		if lines[0][k] != want {
			t.Errorf("%s = %v, want %v; line %v", k, lines[0][k], want, lines[0])
		}
	}
	var spans []sdktrace.ReadOnlySpan
	for deadline := time.Now().Add(5 * time.Second); len(spans) < 3 && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		spans = recorder.Ended()
	}
	var targets []string
	for _, s := range spans {
		for _, a := range s.Attributes() {
			switch {
			case a.Key == "infergate.target":
				targets = append(targets, a.Value.AsString())
			case a.Key == "gen_ai.request.model" && s.SpanKind() == trace.SpanKindServer && a.Value.AsString() != "team/chat":
				t.Errorf("the request's span names model %s, want team/chat", a.Value.AsString())
			}
		}
	}
	if strings.Join(targets, " ") != "team/self-hosted team/cloud" {
		t.Errorf("attempt spans name targets %v, want team/self-hosted then team/cloud", targets)
	}
}

// A Sheddable request leaves the reserve of a pool's slots to the other classes: where a
// Standard one still goes at once, it hands over to the fallback rather than wait.
func TestVirtualModelSheddableHandsOverBeforeTheReserve(t *testing.T) {
	for _, class := range []flow.Class{flow.Standard, flow.Sheddable} {
		t.Run(class.String(), func(t *testing.T) {
			v, up := selfHostedWithCloud(t, 16, class)
			s := &server{url: up.srv.URL}
			held, cancelHeld := context.WithCancel(context.Background())
			defer cancelHeld()
			extra, cancelExtra := context.WithCancel(context.Background())
			s.occupy(held, t, 15)
			s.occupy(extra, t, 2)
			v.report(t, func(r routing.EngineReport) bool { return r.Waiting > 0 }) // the gateway learns 16 slots
			cancelExtra()
			v.report(t, func(r routing.EngineReport) bool { return r.Running == 15 && r.Waiting == 0 }) // 1 free, a reserve of 2
			want := "self-hosted"
			if class == flow.Sheddable {
				want = "cloud"
			}
			text, models, err := v.ask(t, true, "Say hello")
			servedBy(t, text, models, err, want)
			if got := counter(t, v.reg, "infergate_gateway_queue_outcomes_total", nil); got != 0 {
				t.Errorf("%v requests met the queue", got)
			}
		})
	}
}

// A target whose every provider is ejected is passed over without an attempt.
func TestVirtualModelPassesOverAnEjectedTarget(t *testing.T) {
	v := newVirtual(t, routing.AffinityNone, targetDef{name: "self-hosted", weight: 1}, targetDef{name: "cloud", weight: 1, order: 1})
	v.ups["self-hosted"].sim.SetStatus(http.StatusTooManyRequests)
	for _, stream := range []bool{false, true} {
		resp, body := do(t, http.MethodPost, v.base("team")+"/openai/-/v1/chat/completions",
			`{"model":"chat","messages":[{"role":"user","content":"hi"}]}`, map[string]string{"Content-Type": "application/json", "X-Sim-Retry-After": "60"})
		if resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		// The 429's Retry-After ejected self-hosted's one provider for a minute: the next
		// request goes to cloud at once.
		text, models, err := v.ask(t, stream, "Say hello")
		servedBy(t, text, models, err, "cloud")
	}
	if n := v.served("self-hosted"); n != 1 {
		t.Errorf("the ejected target was asked %d times, want once (the 429)", n)
	}
	if got := v.fallbacks(t, "self-hosted", "unroutable"); got != 3 {
		t.Errorf("fallbacks_total{reason=unroutable} = %v, want 3", got)
	}
}

// A request that leaves a failed target passes over a saturated one to the next with room.
func TestVirtualModelFallsBackPastASaturatedTarget(t *testing.T) {
	v, up := selfHostedWithCloud(t, 2, flow.Standard, true)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	(&server{url: up.srv.URL}).occupy(ctx, t, 4)
	v.report(t, func(r routing.EngineReport) bool { return r.Waiting > 0 })
	v.ups["flaky"].sim.SetStatus(http.StatusServiceUnavailable)
	text, models, err := v.ask(t, true, "Say hello")
	servedBy(t, text, models, err, "cloud")
	for target, reason := range map[string]string{"team/flaky": "503", "team/llama": "saturated"} {
		if got := counter(t, v.reg, "infergate_gateway_fallbacks_total", map[string]string{"target": target, "reason": reason}); got != 1 {
			t.Errorf("fallbacks_total{target=%s,reason=%s} = %v, want 1", target, reason, got)
		}
	}
}

// A hand-over is no way past the next target's queue: when the last target's pool is
// saturated, the request waits there like any request for it, and is refused after its queue
// time, without reaching the full server.
func TestVirtualModelHandOverWaitsInTheNextTargetsQueue(t *testing.T) {
	flaky := newUpstream(t, simulator.Options{Name: "flaky", Models: []string{"m-flaky"}})
	maxTime := 300 * time.Millisecond
	g, up := sharedPool(t, simulator.Options{Name: "self-hosted", MaxNumSeqs: 2, ChunkDelay: 20 * time.Millisecond}, func(s *routing.Spec) {
		s.Entities[0].Queue.MaxTime = &maxTime
		s.Providers = append(s.Providers, provider("team", "p-flaky", flaky.srv.URL))
		s.Entities = append(s.Entities, entity("team", "flaky", backend("team", "p-flaky", "m-flaky")),
			routing.EntitySpec{Workspace: "team", Name: "chat", Targets: []routing.TargetSpec{
				{Workspace: "team", Name: "flaky", Weight: 1}, {Workspace: "team", Name: "llama", Weight: 1, Order: 1}}})
	}, "team")
	v := &virtual{gw: g, ups: map[string]*upstream{"flaky": flaky, "self-hosted": up}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	(&server{url: up.srv.URL}).occupy(ctx, t, 4)
	v.report(t, func(r routing.EngineReport) bool { return r.Waiting > 0 })
	flaky.sim.SetStatus(http.StatusServiceUnavailable)
	before := len(up.sim.Requests())
	_, _, err := v.ask(t, false, "Say hello")
	if code, apiCode, retryAfter := apiStatus(t, err); code != http.StatusTooManyRequests || apiCode != "queue_timeout" || retryAfter == "" {
		t.Errorf("got %d %s (Retry-After %q), want 429 queue_timeout from llama's queue", code, apiCode, retryAfter)
	}
	if n := arrivals(up, before, "Say hello"); n != 0 {
		t.Errorf("the full server received the request %d times", n)
	}
	if got := counter(t, g.reg, "infergate_gateway_queue_outcomes_total", map[string]string{"outcome": "timeout"}); got != 1 {
		t.Errorf("queue timeouts %v, want 1", got)
	}
}

// A hosted API answers with a dated id of the model it was asked for; the client still sees
// the virtual model's name, in JSON and in every event.
func TestVirtualModelHidesATargetsDatedModelID(t *testing.T) {
	hosted := newHTTPTestServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "models") {
			return
		}
		var req struct{ Stream bool }
		_ = json.NewDecoder(r.Body).Decode(&req)
		if !req.Stream {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"id":"c1","object":"chat.completion","created":1,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"message":{"role":"assistant","content":"hosted"},"finish_reason":"stop"}]}`)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		for _, piece := range []string{"hos", "ted"} {
			fmt.Fprintf(w, `data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"delta":{"content":%q}}]}`+"\n\n", piece)
		}
		fmt.Fprint(w, "data: [DONE]\n\n")
	}))
	t.Cleanup(hosted.Close)
	v := newVirtual(t, routing.AffinityNone, targetDef{name: "hosted", weight: 1, url: hosted.URL})
	for _, stream := range []bool{false, true} {
		text, models, err := v.ask(t, stream, "Say hello")
		servedBy(t, text, models, err, "hosted")
	}
}
