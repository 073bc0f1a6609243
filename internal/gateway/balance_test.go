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
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"

	"github.com/infergate/infergate/internal/gateway"
	"github.com/infergate/infergate/internal/routing"
	"github.com/infergate/infergate/internal/scrape"
	"github.com/infergate/infergate/internal/simulator"
)

// server is a simulated vLLM server on a loopback port that counts the generations it is asked for.
type server struct {
	url         string
	generations atomic.Int64
}

func newServer(t *testing.T, opts simulator.Options) *server {
	t.Helper()
	s := &server{}
	sim := simulator.New(opts)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			s.generations.Add(1)
		}
		sim.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	s.url = srv.URL
	return s
}

// occupy sends n long requests straight to the server, which hold its sequences until ctx ends.
func (s *server) occupy(ctx context.Context, t *testing.T, n int) {
	t.Helper()
	for i := range n {
		go func() {
			body := fmt.Sprintf(`{"model":"meta/llama","stream":true,"messages":[{"role":"user","content":"occupied %d"}]}`, i)
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.url+"/v1/chat/completions", strings.NewReader(body))
			req.Header.Set("X-Sim-Chunks", "1000") // 100 s, within the KV cache
			req.Header.Set("X-Sim-Chunk-Delay", "100ms")
			if resp, err := http.DefaultClient.Do(req); err == nil {
				_, _ = bytes.NewBuffer(nil).ReadFrom(resp.Body)
				resp.Body.Close()
			}
		}()
	}
}

// pool serves an entity team/llama, of the default balancing, over servers whose metrics the
// gateway reads as the manager does, and waits until it has read them all once.
func pool(t *testing.T, servers ...*server) *gw {
	t.Helper()
	spec := routing.Spec{Entities: []routing.EntitySpec{entity("team", "llama")}}
	for i, s := range servers {
		name := fmt.Sprintf("vllm-%d", i)
		p := provider("team", name, s.url)
		p.Metrics = &routing.MetricsSpec{URL: s.url + "/metrics", Interval: 100 * time.Millisecond}
		spec.Providers = append(spec.Providers, p)
		spec.Entities[0].Backends = append(spec.Entities[0].Backends, backend("team", name, "meta/llama"))
	}
	g := newGateway(t, spec, gateway.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = (&scrape.Scraper{Store: g.store, Client: scrape.NewClient(true)}).Start(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
	g.waitForReports(t, func(string, routing.EngineReport) bool { return true })
	return g
}

// waitForReports waits until every provider's last report satisfies ok.
func (g *gw) waitForReports(t *testing.T, ok func(provider string, r routing.EngineReport) bool) {
	t.Helper()
	eventually(t, 10*time.Second, func() error {
		var err error
		g.store.Load().EachProvider(func(p *routing.Provider) {
			if r, at := p.Health.LastReport(); at.IsZero() || !ok(p.Name, r) {
				err = fmt.Errorf("provider %s reports %+v at %v", p.ID, r, at)
			}
		})
		return err
	})
}

func idle(_ string, r routing.EngineReport) bool { return r.Running == 0 && r.Waiting == 0 }

func streamChat(t *testing.T, c *openai.Client, system, user string) openai.CompletionUsage {
	t.Helper()
	_, u := chat(t, c, []openai.ChatCompletionMessageParamUnion{openai.SystemMessage(system), openai.UserMessage(user)})
	return u
}

// chat streams a chat completion of team/llama and returns the answer and its usage.
func chat(t *testing.T, c *openai.Client, messages []openai.ChatCompletionMessageParamUnion) (string, openai.CompletionUsage) {
	t.Helper()
	params := openai.ChatCompletionNewParams{
		Model:         "team/llama",
		Messages:      messages,
		StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
	}
	s := c.Chat.Completions.NewStreaming(ctxTimeout(t, 30*time.Second), params)
	var acc openai.ChatCompletionAccumulator
	for s.Next() {
		acc.AddChunk(s.Current())
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	if acc.Choices[0].Message.Content == "" {
		t.Fatal("an empty answer")
	}
	return acc.Choices[0].Message.Content, acc.Usage
}

// generations returns the generations each server was asked for.
func generations(servers []*server) []int64 {
	var n []int64
	for _, s := range servers {
		n = append(n, s.generations.Load())
	}
	return n
}

// onlyOne returns the server that was asked for all n generations, -1 when none was; it fails
// the test when whose requests went to more than one.
func onlyOne(t *testing.T, servers []*server, n int64, whose string) int {
	t.Helper()
	home := -1
	for i, got := range generations(servers) {
		switch {
		case got == n:
			home = i
		case got != 0:
			t.Fatalf("%s requests spread over the providers: %v", whose, generations(servers))
		}
	}
	return home
}

func TestSaturatedProviderReceivesLess(t *testing.T) {
	opts := simulator.Options{Models: []string{"meta/llama"}, MaxNumSeqs: 2, Chunks: 4, ChunkDelay: 10 * time.Millisecond}
	busy, a, b := newServer(t, opts), newServer(t, opts), newServer(t, opts)
	g := pool(t, busy, a, b)

	// Another client (or another gateway replica) fills busy: two running, four waiting.
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	busy.occupy(ctx, t, 6)
	g.waitForReports(t, func(p string, r routing.EngineReport) bool { return p != "vllm-0" || r.Running == 2 && r.Waiting == 4 })
	before := busy.generations.Load()

	// Requests of many different prompts, a few at a time, through the OpenAI SDK.
	c := g.client("team")
	var wg sync.WaitGroup
	for i := range 30 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			streamChat(t, c, fmt.Sprintf("System prompt %d.", i), "Say hello")
		}()
		if i%3 == 2 {
			wg.Wait()
		}
	}
	wg.Wait()
	if got := busy.generations.Load() - before; got != 0 {
		t.Errorf("the saturated provider received %d of 30 requests, while the others had room", got)
	}
	if a.generations.Load() == 0 || b.generations.Load() == 0 {
		t.Errorf("the requests did not spread over the idle providers: %d and %d", a.generations.Load(), b.generations.Load())
	}

	// Once it drains, it gets its share again.
	stop()
	g.waitForReports(t, idle)
	before = busy.generations.Load()
	for i := range 30 {
		streamChat(t, c, fmt.Sprintf("Another system prompt %d.", i), "Say hello")
	}
	if got := busy.generations.Load() - before; got == 0 {
		t.Error("the drained provider gets no requests")
	}
}

func TestSharedPrefixLandsOnOneProviderWhileItHasRoom(t *testing.T) {
	opts := simulator.Options{Models: []string{"meta/llama"}, MaxNumSeqs: 4, Chunks: 4, KVCacheBlocks: 1024}
	servers := []*server{newServer(t, opts), newServer(t, opts), newServer(t, opts)}
	g := pool(t, servers...)
	c := g.client("team")
	system := "You are the support assistant of a bakery. " + strings.Repeat("Answer about bread, cakes and opening hours. ", 40)

	counts := func() []int64 { return generations(servers) }
	// A conversation: each turn repeats the ones before.
	messages := []openai.ChatCompletionMessageParamUnion{openai.SystemMessage(system)}
	var cached int64
	for i := range 12 {
		messages = append(messages, openai.UserMessage(fmt.Sprintf("Question %d: when do you open?", i)))
		answer, u := chat(t, c, messages)
		messages = append(messages, openai.AssistantMessage(answer))
		if i > 0 {
			cached += u.PromptTokensDetails.CachedTokens
		}
	}
	home := onlyOne(t, servers, 12, "the conversation's")
	if home < 0 || cached == 0 {
		t.Fatalf("requests per provider %v, cached prompt tokens %d", counts(), cached)
	}
	if n := counter(t, g.reg, "infergate_gateway_provider_picks_total", map[string]string{"balancing": "CacheAware", "choice": "preferred"}); n != 12 {
		t.Errorf("preferred picks %v, want 12", n)
	}

	// Other applications, with system prompts of their own, go to other providers.
	for i := range 30 {
		streamChat(t, c, fmt.Sprintf("You are the assistant of shop %d. ", i)+strings.Repeat("Answer about its goods. ", 60), "Question of a customer")
	}
	for i, n := range counts() {
		if i != home && n == 0 {
			t.Errorf("30 different prompts left a provider without requests: %v", counts())
		}
	}

	// When its home is full and queueing, the prefix goes elsewhere, and comes back after.
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	homeServer := servers[home]
	homeServer.occupy(ctx, t, 8)
	g.waitForReports(t, func(p string, r routing.EngineReport) bool {
		return p != fmt.Sprintf("vllm-%d", home) || r.Waiting == 4
	})
	before := homeServer.generations.Load()
	next := append(messages, openai.UserMessage("Are you open on Sunday?"))
	chat(t, c, next)
	if homeServer.generations.Load() != before {
		t.Error("the prefix went to its provider while it was queueing and others had room")
	}
	if n := counter(t, g.reg, "infergate_gateway_provider_picks_total", map[string]string{"balancing": "CacheAware", "choice": "spilled"}); n != 1 {
		t.Errorf("spilled picks %v, want 1", n)
	}
	stop()
	g.waitForReports(t, idle)
	chat(t, c, append(messages, openai.UserMessage("Thank you")))
	if homeServer.generations.Load() != before+1 {
		t.Error("the prefix did not return to its provider once it had room")
	}
}

func TestSharedSystemPromptLandsOnTheServerThatHoldsIt(t *testing.T) {
	opts := simulator.Options{Models: []string{"meta/llama"}, MaxNumSeqs: 4, Chunks: 4, KVCacheBlocks: 1024}
	servers := []*server{newServer(t, opts), newServer(t, opts), newServer(t, opts)}
	g := pool(t, servers...)
	c := g.client("team")
	// An application with a long system prompt (about 1,000 tokens) and a new question on
	// every request: RAG, classifiers, agents.
	system := "You classify the tickets of a help desk. " + strings.Repeat("Label each ticket billing, outage, access or other, and say why in one line. ", 50)
	counts := func() []int64 { return generations(servers) }
	var cached, prompt int64
	for i := range 20 {
		u := streamChat(t, c, system, fmt.Sprintf("Ticket %d: my invoice %d is wrong and I cannot log in since %d.", i, 1000+i*7, i))
		if i > 0 {
			cached += u.PromptTokensDetails.CachedTokens
			prompt += u.PromptTokens
		}
	}
	home := onlyOne(t, servers, 20, "the application's")
	// Every request after the first found the system prompt in its server's cache.
	if home < 0 || float64(cached) < 0.9*float64(prompt) {
		t.Fatalf("requests per provider %v; %d of %d prompt tokens cached", counts(), cached, prompt)
	}

	// The index of what each server holds is reported: the home's holds the system prompt's
	// blocks and the questions', the others' nothing.
	blocks := counter(t, g.reg, "infergate_gateway_prefix_index_blocks", map[string]string{"provider": fmt.Sprintf("vllm-%d", home)})
	if all := counter(t, g.reg, "infergate_gateway_prefix_index_blocks", nil); blocks < 15 || all != blocks {
		t.Errorf("prefix index blocks: %v at home, %v in all", blocks, all)
	}
	if b := counter(t, g.reg, "infergate_gateway_prefix_index_bytes", nil); b <= 0 {
		t.Errorf("prefix index bytes %v", b)
	}

	// When its server is full and queueing, the application's requests go elsewhere while it
	// is, and come back after.
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	homeServer := servers[home]
	homeServer.occupy(ctx, t, 8)
	g.waitForReports(t, func(p string, r routing.EngineReport) bool {
		return p != fmt.Sprintf("vllm-%d", home) || r.Waiting == 4
	})
	before := homeServer.generations.Load()
	for i := range 3 {
		streamChat(t, c, system, fmt.Sprintf("Ticket %d: the site is down.", 100+i))
	}
	if homeServer.generations.Load() != before {
		t.Errorf("requests went to the server that holds the prompt while it was queueing and others had room: %v", counts())
	}
	// The first spilled; the next ones went where the first did, which holds it now.
	picks := func(choice string) float64 {
		return counter(t, g.reg, "infergate_gateway_provider_picks_total", map[string]string{"balancing": "CacheAware", "choice": choice})
	}
	if n := picks("spilled"); n != 1 {
		t.Errorf("spilled picks %v, want 1 (then the spill target holds the prompt too)", n)
	}
	stop()
	g.waitForReports(t, idle)
	streamChat(t, c, system, "Ticket 200: a refund.")
	if homeServer.generations.Load() != before+1 {
		t.Errorf("the application did not return to its server once it had room: %v", counts())
	}
}
