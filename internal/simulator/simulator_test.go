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
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func post(t *testing.T, h http.Handler, path, body string, header map[string]string) *http.Response {
	t.Helper()
	req := httptest.NewRequest("POST", path, strings.NewReader(body))
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func TestChatAndUsage(t *testing.T) {
	s := New(Options{Name: "sim-a", Models: []string{"m/one"}, Chunks: 3})
	resp := post(t, s, "/v1/chat/completions", `{"model":"m/one","messages":[{"role":"user","content":"hi"}]}`, nil)
	var c completion
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || c.Model != "m/one" || c.Object != "chat.completion" || c.Usage.CompletionTokens != 3 ||
		c.Choices[0].Message.Content != "Hello from sim-a. word1 word2" {
		t.Errorf("%d %+v", resp.StatusCode, c)
	}
}

func TestStreamSendsChunksUsageAndDone(t *testing.T) {
	s := New(Options{Models: []string{"m"}, SSEExtras: true})
	resp := post(t, s, "/v1/chat/completions", `{"model":"m","stream":true,"stream_options":{"include_usage":true}}`,
		map[string]string{"X-Sim-Chunks": "4"})
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	var data []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			data = append(data, d)
		}
	}
	if len(data) != 6 || data[5] != "[DONE]" || !strings.Contains(data[4], `"usage":{"prompt_tokens"`) {
		t.Errorf("events %q", data)
	}
}

func TestFailuresKeysAndUnknownModels(t *testing.T) {
	s := New(Options{Models: []string{"m"}, APIKey: "k"})
	if r := post(t, s, "/v1/chat/completions", `{"model":"m"}`, nil); r.StatusCode != 401 {
		t.Errorf("no key: %d", r.StatusCode)
	}
	auth := map[string]string{"Authorization": "Bearer k"}
	if r := post(t, s, "/v1/chat/completions", `{"model":"other"}`, auth); r.StatusCode != 404 {
		t.Errorf("unknown model: %d", r.StatusCode)
	}
	r := post(t, s, "/v1/chat/completions", `{"model":"m"}`, map[string]string{"Authorization": "Bearer k", "X-Sim-Status": "503", "X-Sim-Retry-After": "2"})
	if r.StatusCode != 503 || r.Header.Get("Retry-After") != "2" {
		t.Errorf("injected: %d %q", r.StatusCode, r.Header.Get("Retry-After"))
	}
	s.SetStatus(502)
	if r := post(t, s, "/v1/embeddings", `{"model":"m","input":"x"}`, auth); r.StatusCode != 502 {
		t.Errorf("SetStatus: %d", r.StatusCode)
	}
	s.SetStatus(0)
	r = post(t, s, "/v1/embeddings", `{"model":"m","input":["a","b"],"encoding_format":"base64"}`, auth)
	body, _ := io.ReadAll(r.Body)
	if r.StatusCode != 200 || strings.Count(string(body), `"embedding":"`) != 2 {
		t.Errorf("base64 embeddings: %d %s", r.StatusCode, body)
	}
}
