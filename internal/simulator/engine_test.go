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

package simulator

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	pmodel "github.com/prometheus/common/model"
)

// scrape reads the simulator's /metrics as a Prometheus server would.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(pmodel.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for name, f := range families {
		for _, m := range f.GetMetric() {
			switch {
			case m.Gauge != nil:
				out[name] += m.Gauge.GetValue()
			case m.Counter != nil:
				out[name] += m.Counter.GetValue()
			case m.Histogram != nil:
				out[name+"_count"] += float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return out
}

func chatBody(system, user string, extra string) string {
	b, _ := json.Marshal([]map[string]string{{"role": "system", "content": system}, {"role": "user", "content": user}})
	return `{"model":"m","messages":` + string(b) + extra + `}`
}

func completeChat(t *testing.T, url, body string) completion {
	t.Helper()
	resp, err := http.Post(url+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var c completion
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil || resp.StatusCode != 200 {
		t.Fatalf("%d %v", resp.StatusCode, err)
	}
	return c
}

func TestPrefixCacheHitsAndEvicts(t *testing.T) {
	// 64 blocks of 16 tokens (64 bytes): room for one 2 KiB system prompt (32 blocks) and a bit.
	up := httptest.NewServer(New(Options{Models: []string{"m"}, Chunks: 2, KVCacheBlocks: 64}))
	defer up.Close()
	system := strings.Repeat("You are a helpful assistant. ", 71)[:2048]
	first := completeChat(t, up.URL, chatBody(system, "What is a KV cache?", ""))
	if first.Usage.PromptTokensDetails == nil || first.Usage.PromptTokensDetails.CachedTokens != 0 {
		t.Fatalf("a first prompt found something cached: %+v", first.Usage)
	}
	again := completeChat(t, up.URL, chatBody(system, "And a prefix cache?", ""))
	if cached := again.Usage.PromptTokensDetails.CachedTokens; cached < 2048/bytesPerToken || cached >= again.Usage.PromptTokens {
		t.Errorf("the shared system prompt: %d of %d prompt tokens cached, want at least %d", cached, again.Usage.PromptTokens, 2048/bytesPerToken)
	}
	// Another long prompt takes the room; the first one's blocks are evicted.
	completeChat(t, up.URL, chatBody(strings.Repeat("Another prompt, entirely. ", 90), "Hi", ""))
	evicted := completeChat(t, up.URL, chatBody(system, "What is a KV cache?", ""))
	if cached := evicted.Usage.PromptTokensDetails.CachedTokens; cached >= 2048/bytesPerToken {
		t.Errorf("after eviction %d tokens were still cached", cached)
	}

	m := scrape(t, up.URL)
	if m["vllm:prefix_cache_hits_total"] < 512 || m["vllm:prefix_cache_queries_total"] <= m["vllm:prefix_cache_hits_total"] ||
		m["vllm:prompt_tokens_total"] != m["vllm:prefix_cache_queries_total"] || m["vllm:request_success_total"] != 4 ||
		m["vllm:generation_tokens_total"] != 8 || m["vllm:time_to_first_token_seconds_count"] != 4 {
		t.Errorf("metrics: %v", m)
	}
	// Nothing runs now: the cache holds blocks, but no sequence uses them.
	if m["vllm:kv_cache_usage_perc"] != 0 || m["vllm:num_requests_running"] != 0 {
		t.Errorf("idle server: %v", m)
	}

	resp, err := http.Post(up.URL+"/v1/chat/completions", "application/json", strings.NewReader(chatBody(strings.Repeat("x", 5000), "too long", "")))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a prompt larger than the KV cache: %d, want 400", resp.StatusCode)
	}
}

func TestSequencesBeyondMaxNumSeqsWait(t *testing.T) {
	up := httptest.NewServer(New(Options{Models: []string{"m"}, Chunks: 4, ChunkDelay: 100 * time.Millisecond, MaxNumSeqs: 2, KVCacheBlocks: 1000}))
	defer up.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Three streams: two run, one waits. Each stream's response starts at once.
	var bodies []*bufio.Reader
	for i := range 3 {
		req, _ := http.NewRequestWithContext(ctx, "POST", up.URL+"/v1/chat/completions",
			strings.NewReader(chatBody("system", strings.Repeat("u", i+1), `,"stream":true`)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		bodies = append(bodies, bufio.NewReader(resp.Body))
	}
	// The response starts before the request joins the queue: wait until it has.
	var m map[string]float64
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if m = scrape(t, up.URL); m["vllm:num_requests_waiting"] == 1 {
			break
		}
	}
	if m["vllm:num_requests_running"] != 2 || m["vllm:num_requests_waiting"] != 1 || m["vllm:kv_cache_usage_perc"] <= 0 {
		t.Errorf("three streams on two sequence slots: %v", m)
	}
	// The waiting one's first token comes after one of the others has ended.
	events := make(chan int, 3)
	for i, b := range bodies {
		go func() {
			line, _ := b.ReadString('\n')
			if strings.HasPrefix(line, "data: ") {
				events <- i
			}
		}()
	}
	order := []int{<-events, <-events, <-events}
	if order[2] != 2 {
		t.Errorf("first tokens came in the order %v; the third stream waited for a slot", order)
	}
}

func TestMaxTokensAndFinishReason(t *testing.T) {
	up := httptest.NewServer(New(Options{Models: []string{"m"}, Chunks: 8}))
	defer up.Close()
	c := completeChat(t, up.URL, chatBody("s", "u", `,"max_tokens":3`))
	if c.Usage.CompletionTokens != 3 || *c.Choices[0].FinishReason != "length" || c.Usage.PromptTokensDetails != nil {
		t.Errorf("max_tokens 3: %+v, finish %q", c.Usage, *c.Choices[0].FinishReason)
	}
	if c := completeChat(t, up.URL, chatBody("s", "u", "")); c.Usage.CompletionTokens != 8 || *c.Choices[0].FinishReason != "stop" {
		t.Errorf("no max_tokens: %+v", c.Usage)
	}
}
